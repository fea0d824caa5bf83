"""The grain pipeline: shapes, determinism, resuming by step, process shards, device sharding."""

import os
import pathlib
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from configs import srn as srn_config
from faceblur.data import demo, input_pipeline
from faceblur.data.image_io import save_image
from faceblur.data.sources import PairedFolder
from faceblur.errors import DataError
from faceblur.images import to_float

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Numbered:
  """Record i is an image filled with i: batches show which records they hold."""

  def __init__(self, count=10):
    self.count = count

  def __len__(self):
    return self.count

  def __getitem__(self, index):
    return {"image": np.full((6, 6, 3), index, np.uint8), "name": f"{index:03d}"}


def _ids(record, rng):
  return {"id": np.int32(record["image"][0, 0, 0]), "noise": np.float32(rng.uniform()),
          "name": record["name"]}


def _take(dataset, count, **kwargs):
  iterator = input_pipeline.iterate(dataset, **kwargs)
  return [next(iterator) for _ in range(count)]


def _paired_folder(root, count=6, size=40):
  faces = demo.demo_faces(size=size, count=count, seed=0)
  for i, face in enumerate(faces):
    save_image(root / "sharp" / f"{i}.png", face)
    save_image(root / "blurred" / f"{i}.png", face // 2)
  return PairedFolder(root)


def test_cyclegan_batches_have_the_configured_shape_and_dtype():
  source = demo.DemoFaces(size=40, count=12)
  dataset = input_pipeline.make_dataset(source, batch_size=4, seed=0,
                                        transform=input_pipeline.cyclegan_transform(36, 32))
  batch = _take(dataset, 1)[0]
  assert batch["image"].shape == (4, 32, 32, 3) and batch["image"].dtype == np.float32
  assert 0 <= batch["image"].min() and batch["image"].max() <= 1
  assert batch["name"].shape == (4,)


def test_paired_batches_share_the_crop_and_flip(tmp_path):
  dataset = input_pipeline.make_dataset(
      _paired_folder(tmp_path), batch_size=3, seed=0,
      transform=input_pipeline.paired_transform(24, random_flip=True))
  for batch in _take(dataset, 4):
    assert batch["blurred"].shape == batch["sharp"].shape == (3, 24, 24, 3)
    assert batch["blurred"].dtype == np.float32
    # blurred = sharp // 2 pixel for pixel, so the crops and flips must coincide
    np.testing.assert_allclose(batch["blurred"] * 255, np.floor(batch["sharp"] * 255 / 2 + 1e-3),
                               atol=1e-3)


def test_eval_transforms_are_deterministic_centre_crops(tmp_path):
  pairs = _paired_folder(tmp_path)
  transform = input_pipeline.paired_transform(None, train=False)
  whole = transform(pairs[0], np.random.default_rng(0))
  assert whole["sharp"].shape == (40, 40, 3)
  crop = input_pipeline.paired_transform(16, train=False)(pairs[0], np.random.default_rng(1))
  np.testing.assert_array_equal(crop["sharp"], whole["sharp"][12:28, 12:28])
  faces = demo.DemoFaces(size=40, count=2)
  cyclegan = input_pipeline.cyclegan_transform(36, 32, train=False)
  first = cyclegan(faces[0], np.random.default_rng(0))["image"]
  np.testing.assert_array_equal(first, cyclegan(faces[0], np.random.default_rng(9))["image"])


def test_cyclegan_transform_is_resize_and_crop_of_a_square_bicubic_resize():
  # A 30x60 (non-square) image: the official resize_and_crop squashes it to load_size^2 with
  # bicubic interpolation, then crops; keeping the aspect or resizing bilinearly differs.
  image = np.random.default_rng(0).integers(0, 256, (30, 60, 3), dtype=np.uint8)
  square = np.asarray(Image.fromarray(image).resize((36, 36), Image.BICUBIC))
  bilinear = np.asarray(Image.fromarray(image).resize((36, 36), Image.BILINEAR))
  centre = input_pipeline.cyclegan_transform(36, 32, train=False)({"image": image, "name": "x"},
                                                                  None)
  np.testing.assert_array_equal(centre["image"], to_float(square[2:34, 2:34]))
  assert not np.array_equal(centre["image"], to_float(bilinear[2:34, 2:34]))
  no_flip = input_pipeline.cyclegan_transform(36, 32, random_flip=False)
  crops = {square[top:top + 32, left:left + 32].tobytes()
           for top in range(5) for left in range(5)}
  for seed in range(8):
    crop = no_flip({"image": image, "name": "x"}, np.random.default_rng(seed))["image"]
    assert (crop * 255).round().astype(np.uint8).tobytes() in crops


def test_paired_training_crops_without_flips_by_default():
  # The official SRN code takes one random crop of the pair and no flips.
  assert not input_pipeline.PairedTransform(crop_size=8).random_flip
  assert not srn_config.get_config().data.random_flip


def test_too_small_images_name_the_record(tmp_path):
  pairs = _paired_folder(tmp_path, count=1, size=16)
  with pytest.raises(DataError, match=r"0\.png: image 16x16 is smaller than crop_size=24"):
    input_pipeline.paired_transform(24)(pairs[0], np.random.default_rng(0))


def test_same_seed_same_batches_other_seed_other_batches():
  first = _take(input_pipeline.make_dataset(Numbered(), batch_size=4, transform=_ids, seed=0), 5)
  again = _take(input_pipeline.make_dataset(Numbered(), batch_size=4, transform=_ids, seed=0), 5)
  other = _take(input_pipeline.make_dataset(Numbered(), batch_size=4, transform=_ids, seed=1), 5)
  for a, b in zip(first, again, strict=True):
    np.testing.assert_array_equal(a["id"], b["id"])
    np.testing.assert_array_equal(a["noise"], b["noise"])
  assert any(not np.array_equal(a["id"], c["id"]) for a, c in zip(first, other, strict=True))


def test_epochs_cover_every_record_and_reshuffle():
  batches = _take(input_pipeline.make_dataset(Numbered(), batch_size=5, transform=_ids, seed=0), 4)
  ids = np.concatenate([batch["id"] for batch in batches])
  first_epoch, second_epoch = ids[:10], ids[10:]
  assert sorted(first_epoch) == sorted(second_epoch) == list(range(10))
  assert not np.array_equal(first_epoch, second_epoch)
  noise = np.concatenate([batch["noise"] for batch in batches])
  assert len(set(noise.tolist())) == 20  # augmentation randomness differs per epoch too


def test_finite_epochs_end():
  dataset = input_pipeline.make_dataset(Numbered(), batch_size=4, transform=_ids, seed=0,
                                        num_epochs=2, drop_remainder=False)
  batches = list(input_pipeline.iterate(dataset))
  assert [len(batch["id"]) for batch in batches] == [4, 4, 4, 4, 4]


@pytest.mark.parametrize("prefetch", [0, 2])
def test_resuming_at_a_step_yields_what_the_uninterrupted_run_yields(prefetch):
  dataset = input_pipeline.make_dataset(Numbered(7), batch_size=3, transform=_ids, seed=4)
  uninterrupted = _take(dataset, 9, prefetch=prefetch)
  for start_step in (1, 5, 8):
    resumed = _take(dataset, 9 - start_step, start_step=start_step, prefetch=prefetch)
    for expected, actual in zip(uninterrupted[start_step:], resumed, strict=True):
      np.testing.assert_array_equal(expected["id"], actual["id"])
      np.testing.assert_array_equal(expected["noise"], actual["noise"])


def test_process_shards_are_disjoint_and_cover_the_data():
  names = []
  for process_index in range(2):
    dataset = input_pipeline.make_dataset(Numbered(11), batch_size=2, transform=_ids, seed=0,
                                          num_epochs=1, drop_remainder=False,
                                          process_index=process_index, process_count=2)
    names.append({name for batch in input_pipeline.iterate(dataset) for name in batch["name"]})
  assert not names[0] & names[1]
  assert names[0] | names[1] == {f"{i:03d}" for i in range(11)}


def test_worker_processes_give_the_same_batches():
  dataset = input_pipeline.make_dataset(demo.DemoFaces(size=24, count=8), batch_size=2, seed=0,
                                        transform=input_pipeline.cyclegan_transform(24, 20))
  threads = _take(dataset, 3, start_step=2)
  workers = _take(dataset, 3, start_step=2, num_workers=1)
  for a, b in zip(threads, workers, strict=True):
    assert type(b["image"]) is np.ndarray  # copied out of shared memory
    np.testing.assert_array_equal(a["image"], b["image"])


def test_transforms_pickle_for_worker_processes():
  for transform in (input_pipeline.cyclegan_transform(36, 32),
                    input_pipeline.paired_transform(24, train=True, random_flip=False)):
    assert pickle.loads(pickle.dumps(transform)) == transform


def test_dataset_too_small_for_a_batch_is_an_error():
  with pytest.raises(DataError, match="do not fill one batch of 8"):
    input_pipeline.make_dataset(Numbered(3), batch_size=8, transform=_ids, seed=0, num_epochs=2)


_SHARD_SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from faceblur.train import partitioning

    assert jax.device_count() == 8, jax.devices()
    mesh = partitioning.make_mesh()
    batch = {"image": np.arange(16 * 4, dtype=np.float32).reshape(16, 2, 2, 1),
             "id": np.arange(100, 116, dtype=np.int32),
             "name": np.array([f"{i:03d}" for i in range(16)])}
    sharded = partitioning.shard_batch(batch, mesh)
    assert set(sharded) == {"image", "id"}, set(sharded)  # names stay on the host
    for key in ("image", "id"):
      array = sharded[key]
      assert array.shape == batch[key].shape and array.dtype == batch[key].dtype
      np.testing.assert_array_equal(np.asarray(array), batch[key])
      shards = sorted(array.addressable_shards, key=lambda shard: shard.index[0].start or 0)
      # Device k of the mesh holds rows 2k and 2k + 1, and nothing else.
      assert [shard.device for shard in shards] == list(mesh.devices.flat), shards
      for k, shard in enumerate(shards):
        assert shard.index[0] == slice(2 * k, 2 * k + 2), (key, k, shard.index)
        np.testing.assert_array_equal(np.asarray(shard.data), batch[key][2 * k:2 * k + 2])
    print("SHARDED OK")
""")


def test_shard_batch_splits_over_the_mesh():
  """On 8 (simulated CPU) devices, each device holds its own 2 of 16 rows. JAX fixes its
  device count at start-up, so this runs in a child process."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
  result = subprocess.run([sys.executable, "-c", "import conftest\n" + _SHARD_SCRIPT], env=env,
                          cwd=ROOT / "tests", capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "SHARDED OK" in result.stdout
