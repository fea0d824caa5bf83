"""Sources: folders (both paired layouts), CelebA via tfds, packed pairs, and the demo faces."""

import io
import pickle
import zipfile

import numpy as np
import pytest
from PIL import Image

from faceblur.data import camera_blur, demo, factory, sources, tfds_pairs
from faceblur.data.image_io import save_image
from faceblur.errors import ConfigError, DataError, ImageReadError


def _image(seed, height=12, width=10):
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _write(root, names, height=12, width=10):
  for seed, name in enumerate(names):
    save_image(root / name, _image(seed, height, width))


def _gradient_magnitude(images):
  images = images.astype(np.float32)
  return (np.abs(np.diff(images, axis=1)).mean() + np.abs(np.diff(images, axis=2)).mean())


# --- ImageFolder ---------------------------------------------------------------------------


def test_image_folder_is_recursive_and_ignores_non_images(tmp_path):
  _write(tmp_path, ["b.png", "a.jpg", "sub/c.webp", "sub/deeper/d.bmp", "e.jpeg"])
  (tmp_path / "sub" / "labels.csv").write_text("x,y\n")
  (tmp_path / "f.PNG").write_bytes((tmp_path / "b.png").read_bytes())
  folder = sources.ImageFolder(tmp_path)
  assert len(folder) == 6
  names = [folder[i]["name"] for i in range(len(folder))]
  assert names == ["a.jpg", "b.png", "e.jpeg", "f.PNG", "sub/c.webp", "sub/deeper/d.bmp"]
  record = folder[1]
  assert record["image"].dtype == np.uint8 and record["image"].shape == (12, 10, 3)
  np.testing.assert_array_equal(record["image"], _image(0))
  assert len(pickle.loads(pickle.dumps(folder))) == 6


def test_image_folder_errors_name_the_folder(tmp_path):
  with pytest.raises(DataError, match="no such folder") as caught:
    sources.ImageFolder(tmp_path / "nowhere")
  assert str(tmp_path / "nowhere") in str(caught.value)
  (tmp_path / "empty").mkdir()
  with pytest.raises(DataError, match="no images") as caught:
    sources.ImageFolder(tmp_path / "empty")
  assert str(tmp_path / "empty") in str(caught.value)


def test_corrupt_file_fails_at_read_time(tmp_path):
  _write(tmp_path, ["a.png", "c.png"])
  (tmp_path / "b.png").write_text("not a png")
  folder = sources.ImageFolder(tmp_path)  # lazy: listing does not decode
  assert folder[0]["image"].shape == (12, 10, 3)
  with pytest.raises(ImageReadError, match="b.png"):
    folder[1]


# --- PairedFolder --------------------------------------------------------------------------


def test_paired_folder_matches_by_relative_path_across_extensions(tmp_path):
  _write(tmp_path / "blurred", ["x/1.jpg", "2.png"])
  _write(tmp_path / "sharp", ["x/1.png", "2.webp"])
  pairs = sources.PairedFolder(tmp_path)
  assert len(pairs) == 2
  first = pairs[0]
  assert first["name"] == "2.png"
  assert first["blurred"].shape == first["sharp"].shape == (12, 10, 3)
  np.testing.assert_array_equal(pairs[1]["sharp"], _image(0))
  assert pairs[1]["name"] == "x/1.jpg"


def test_paired_folder_reads_the_gopro_layout(tmp_path):
  for sequence in ("GOPR0372_07_00", "GOPR0384_11_01"):
    _write(tmp_path / sequence / "blur", ["000001.png", "000002.png"])
    _write(tmp_path / sequence / "sharp", ["000001.png", "000002.png"])
  pairs = sources.PairedFolder(tmp_path)
  assert [pairs[i]["name"] for i in range(len(pairs))] == [
      "GOPR0372_07_00/000001.png", "GOPR0372_07_00/000002.png",
      "GOPR0384_11_01/000001.png", "GOPR0384_11_01/000002.png"]


def test_unmatched_names_raise_naming_the_first_and_the_count(tmp_path):
  _write(tmp_path / "blurred", ["a.png", "b.png", "c.png"])
  _write(tmp_path / "sharp", ["a.png"])
  with pytest.raises(DataError, match=r"b\.png: no partner .*2 unmatched") as caught:
    sources.PairedFolder(tmp_path)
  assert str(tmp_path / "blurred" / "b.png") in str(caught.value)
  _write(tmp_path / "seq" / "blur", ["a.png"])
  with pytest.raises(DataError, match="no such folder|expected blurred/"):
    sources.PairedFolder(tmp_path / "missing")


def test_gopro_sequence_without_sharp_and_unknown_layout(tmp_path):
  _write(tmp_path / "seq" / "blur", ["a.png"])
  with pytest.raises(DataError, match="seq: has no sharp/"):
    sources.PairedFolder(tmp_path)
  (tmp_path / "other").mkdir()
  with pytest.raises(DataError, match="expected blurred/ and sharp/"):
    sources.PairedFolder(tmp_path / "other")


def test_pair_size_mismatch_fails_at_read_time_naming_both(tmp_path):
  _write(tmp_path / "blurred", ["a.png"], height=12)
  _write(tmp_path / "sharp", ["a.png"], height=14)
  pairs = sources.PairedFolder(tmp_path)
  with pytest.raises(ImageReadError, match=r"blurred/a\.png and .*sharp/a\.png: sizes differ"):
    pairs[0]


# --- CelebA (tfds) --------------------------------------------------------------------------


def test_celeb_a_without_prepared_data_says_how_to_prepare(tmp_path):
  with pytest.raises(DataError) as caught:
    sources.CelebA(split="train", data_dir=tmp_path)
  message = str(caught.value)
  assert "\n" not in message and str(tmp_path) in message and "prepare_celeb_a" in message


def _fake_celeb_a_files(folder, num_images=9):
  """CelebA's five files in miniature: random 'photos', every other one `Blurry`."""
  import tensorflow_datasets as tfds

  headings = tfds.builder_cls("celeb_a")._generate_examples.__globals__
  attributes, landmarks = headings["ATTR_HEADINGS"], headings["LANDMARK_HEADINGS"]
  names = [f"{i:06d}.jpg" for i in range(1, num_images + 1)]
  folder.mkdir()
  with zipfile.ZipFile(folder / "img_align_celeba.zip", "w") as archive:
    for seed, name in enumerate(names):
      encoded = io.BytesIO()
      Image.fromarray(_image(seed, 218, 178)).save(encoded, format="JPEG")
      archive.writestr(f"img_align_celeba/{name}", encoded.getvalue())
  # Partition: 0 train, 1 validation, 2 test.
  (folder / "list_eval_partition.txt").write_text(
      "".join(f"{name} {i % 3}\n" for i, name in enumerate(names)))
  rows = [name + "".join(" 1" if heading == "Blurry" and i % 2 else " -1"
                         for heading in attributes) for i, name in enumerate(names)]
  (folder / "list_attr_celeba.txt").write_text(
      f"{len(names)}\n{' '.join(attributes)}\n" + "\n".join(rows) + "\n")
  (folder / "list_landmarks_align_celeba.txt").write_text(
      f"{len(names)}\n{' '.join(landmarks)}\n"
      + "".join(name + " 7" * len(landmarks) + "\n" for name in names))
  (folder / "identity_CelebA.txt").write_text(
      "".join(f"{name} {i}\n" for i, name in enumerate(names)))


def test_celeb_a_prepared_without_tensorflow_and_filtered_by_blurry(tmp_path):
  _fake_celeb_a_files(tmp_path / "files")
  prepared = sources.prepare_celeb_a(tmp_path / "files", tmp_path / "tfds")
  assert prepared == tmp_path / "tfds" / "celeb_a" / "2.1.0"
  everything = sources.CelebA(split="train", data_dir=tmp_path / "tfds")
  assert len(everything) == 3  # images 0, 3, 6 of 9
  record = everything[0]
  assert record["image"].shape == (218, 178, 3) and record["image"].dtype == np.uint8
  assert record["name"] == "celeb_a/train/000000"
  blurry = sources.CelebA(split="train", blurry=True, data_dir=tmp_path / "tfds")
  sharp = sources.CelebA(split="train", blurry=False, data_dir=tmp_path / "tfds")
  assert len(blurry) == 1 and len(sharp) == 2  # only image 3 is odd
  assert sorted(blurry.indices.tolist() + sharp.indices.tolist()) == [0, 1, 2]
  assert (prepared / "faceblur_blurry_train.npy").exists()  # attribute scan cached
  restored = pickle.loads(pickle.dumps(blurry))
  np.testing.assert_array_equal(restored[0]["image"], blurry[0]["image"])
  with pytest.raises(DataError, match="no split 'valid'"):
    sources.CelebA(split="valid", data_dir=tmp_path / "tfds")


def test_prepare_celeb_a_names_a_missing_file(tmp_path):
  (tmp_path / "files").mkdir()
  with pytest.raises(DataError, match="img_align_celeba.zip: missing"):
    sources.prepare_celeb_a(tmp_path / "files", tmp_path / "tfds")


# --- tfds pairs -----------------------------------------------------------------------------


def test_tfds_pairs_round_trip_is_pixel_exact(tmp_path):
  _write(tmp_path / "pairs" / "train" / "blurred", ["a.png", "b.jpg", "c.png"])
  _write(tmp_path / "pairs" / "train" / "sharp", ["a.png", "b.png", "c.png"])
  _write(tmp_path / "pairs" / "test" / "blurred", ["d.png"], height=20)
  _write(tmp_path / "pairs" / "test" / "sharp", ["d.png"], height=20)
  path = tfds_pairs.build_pairs_dataset(tmp_path / "pairs", tmp_path / "tfds")
  assert path == tmp_path / "tfds" / "faceblur_pairs" / "1.0.0"
  for split in ("train", "test"):
    folder = sources.PairedFolder(tmp_path / "pairs" / split)
    for packed in (tfds_pairs.TfdsPairs(tmp_path / "tfds", split=split),
                   pickle.loads(pickle.dumps(tfds_pairs.TfdsPairs(path, split=split)))):
      assert len(packed) == len(folder)
      for i in range(len(folder)):
        expected, actual = folder[i], packed[i]
        assert actual["name"] == expected["name"]
        for key in ("blurred", "sharp"):
          assert actual[key].dtype == np.uint8
          np.testing.assert_array_equal(actual[key], expected[key])
  with pytest.raises(DataError, match="no split 'validation'"):
    tfds_pairs.TfdsPairs(tmp_path / "tfds", split="validation")
  with pytest.raises(DataError, match="none of the split folders"):
    tfds_pairs.build_pairs_dataset(tmp_path / "pairs" / "train", tmp_path / "other")


# --- demo faces -----------------------------------------------------------------------------


def test_demo_faces_are_deterministic_per_seed():
  faces = demo.demo_faces(size=32, count=120, seed=0)
  assert faces.shape == (120, 32, 32, 3) and faces.dtype == np.uint8
  np.testing.assert_array_equal(faces, demo.demo_faces(size=32, count=120, seed=0))
  np.testing.assert_array_equal(faces[:50], demo.demo_faces(size=32, count=50, seed=0))
  other = demo.demo_faces(size=32, count=120, seed=1)
  assert np.abs(faces.astype(int) - other).mean() > 20
  assert len({face.tobytes() for face in faces}) == 120  # augmentation: no duplicates
  assert faces.std(axis=(1, 2)).mean() > 20  # real content, not flat images
  colour = np.abs(faces[..., 0].astype(int) - faces[..., 2]).mean()
  assert colour > 5  # grey LFW faces got a skin tint


def test_demo_blurred_faces_are_camera_blurred_unpaired_other_people():
  sharp = factory.make_source(factory.source_spec("demo_sharp", count=40, seed=0, split="train"),
                              image_size=32)
  blurred = factory.make_source(
      factory.source_spec("demo_blurred", count=40, seed=1, split="blurred"), image_size=32)
  assert len(sharp) == len(blurred) == 40
  sharp_images = np.stack([sharp[i]["image"] for i in range(40)])
  blurred_images = np.stack([blurred[i]["image"] for i in range(40)])
  assert blurred_images.shape == sharp_images.shape and blurred_images.dtype == np.uint8
  assert _gradient_magnitude(blurred_images) < 0.75 * _gradient_magnitude(sharp_images)
  np.testing.assert_array_equal(blurred[3]["image"], blurred[3]["image"])  # per-index seeded
  # The camera over the blurred group's own faces, seeded like the source.
  faces = demo.DemoFaces(size=32, count=40, seed=1, group="blurred")
  np.testing.assert_array_equal(
      blurred[5]["image"], camera_blur.CameraBlurredImages(faces, seed=1)[5]["image"])
  assert sharp[0]["name"] != blurred[0]["name"]


def test_demo_base_face_groups_are_disjoint_and_cover_every_face():
  groups = {name: set(bases) for name, bases in demo.BASE_GROUPS.items() if name != "all"}
  assert groups["train"].isdisjoint(groups["blurred"])
  assert groups["test"].isdisjoint(groups["train"] | groups["blurred"])
  assert set().union(*groups.values()) == set(demo.BASE_GROUPS["all"])
  # A test face never comes from a training base: compare against every base at 32 px.
  bases, _ = demo._base_faces(32)
  test_faces = demo.demo_faces(size=32, count=21, seed=0, group="test")
  assert len({face.tobytes() for face in test_faces}) == 21
  with pytest.raises(ConfigError, match="unknown demo face group 'tset'"):
    demo.demo_faces(size=32, count=2, group="tset")
  assert bases.shape == (102, 32, 32, 3)


def test_camera_blurred_pairs_from_a_spec():
  spec = factory.source_spec("camera_blurred", base=dict(kind="demo_sharp", count=6,
                                                         split="test"), seed=4, max_shake=0.3)
  pairs = factory.make_paired_source(spec, image_size=32)
  record = pairs[2]
  base = demo.DemoFaces(size=32, count=6, seed=0, group="test")
  np.testing.assert_array_equal(record["sharp"], base[2]["image"])
  expected = camera_blur.CameraBlurredPairs(base, seed=4,
                                            model=camera_blur.CameraModel(max_shake=0.3))
  np.testing.assert_array_equal(record["blurred"], expected[2]["blurred"])
  with pytest.raises(ConfigError, match="needs a base source"):
    factory.make_paired_source(factory.source_spec("camera_blurred"))


def test_kernel_blurred_pairs_wrap_any_source():
  base = demo.DemoFaces(size=32, count=10, seed=2)
  pairs = demo.KernelBlurredPairs(base, seed=5, max_blur_length=7.0)
  record = pairs[4]
  np.testing.assert_array_equal(record["sharp"], base[4]["image"])
  np.testing.assert_array_equal(record["blurred"],
                                demo.KernelBlurredPairs(base, seed=5, max_blur_length=7.0)[4]
                                ["blurred"])
  assert not np.array_equal(record["blurred"],
                            demo.KernelBlurredPairs(base, seed=6, max_blur_length=7.0)[4]
                            ["blurred"])
  assert _gradient_magnitude(record["blurred"][None]) < _gradient_magnitude(record["sharp"][None])


class _CountingSource:
  """Six records of 300 bytes each, a pure function of the index; counts the reads."""

  def __init__(self):
    self.reads = []

  def __len__(self):
    return 6

  def __getitem__(self, index):
    self.reads.append(index)
    return {"image": np.full((10, 10, 3), index, np.uint8), "name": f"{index}.png"}


def test_cached_records_read_each_record_once_within_the_budget():
  counting = _CountingSource()
  cached = sources.CachedRecords(counting, max_bytes=4 * 300)
  for _ in range(3):
    for index in range(6):
      record = cached[index]
      assert record["name"] == f"{index}.png" and (record["image"] == index).all()
  # The first four read are kept; the other two are read again each time.
  assert sorted(counting.reads) == [0, 1, 2, 3, 4, 4, 4, 5, 5, 5]
  with pytest.raises(ValueError, match="read-only"):
    cached[0]["image"][0, 0, 0] = 7
  cached[0]["name"] = "changed"  # the caller's dict: the cache's record is left alone
  assert cached[0]["name"] == "0.png" and len(cached) == 6 and cached.reads is counting.reads
  copy = pickle.loads(pickle.dumps(cached))  # a worker process's copy starts empty
  assert (copy[5]["image"] == 5).all() and copy.max_bytes == cached.max_bytes


def test_generated_sources_are_cached_and_files_are_not(tmp_path):
  spec = factory.source_spec("camera_blurred", base=dict(kind="demo_sharp", count=3,
                                                         split="test"), seed=4, max_shake=0.3)
  pairs = factory.make_paired_source(spec, image_size=32)
  assert isinstance(pairs, sources.CachedRecords)
  first = pairs[1]["blurred"]  # rendered, then kept: the same pixels as the source renders
  np.testing.assert_array_equal(first, pairs.source[1]["blurred"])
  assert pairs[1]["blurred"].base is first.base and not first.flags.writeable
  assert repr(pairs).startswith("CameraBlurredPairs(")
  _write(tmp_path, ["a.png"])
  folder = factory.make_source(factory.source_spec("folder", str(tmp_path)))
  assert isinstance(folder, sources.ImageFolder)


# --- splits ---------------------------------------------------------------------------------


def test_train_test_split_is_a_deterministic_80_20_partition():
  train, test = sources.train_test_split(50, seed=3)
  assert len(train) == 40 and len(test) == 10
  assert sorted(np.concatenate([train, test]).tolist()) == list(range(50))
  again_train, again_test = sources.train_test_split(50, seed=3)
  np.testing.assert_array_equal(train, again_train)
  np.testing.assert_array_equal(test, again_test)
  assert not np.array_equal(test, sources.train_test_split(50, seed=4)[1])
