"""Paired faces as a tensorflow-datasets dataset (array_record, no TensorFlow): written by
`build_pairs_dataset` from a paired folder, read back by `TfdsPairs`.

One file per split instead of thousands of PNGs: faster to copy to a cluster and to read
randomly. Images are stored as PNG bytes (lossless; tfds' `Image` feature needs bytes or
paths when TensorFlow is absent). `tfds.builder_from_directory(path).as_data_source(split)`
and grain read it too. This module imports tensorflow_datasets, so `faceblur.data.factory`
imports it only for a `tfds_pairs` source.
"""

import io
import os
import pathlib
import tempfile

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from faceblur.data.sources import LazyDataSource, PairedFolder, Record
from faceblur.errors import DataError

VERSION = "1.0.0"


def _png_bytes(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  return buffer.getvalue()


def _make_builder_class(name: str, split_roots: dict[str, pathlib.Path]):
  """A builder class for this call: tfds builders are classes, and this one is per dataset."""
  class PairsBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """(blurred, sharp, name) face pairs; see faceblur.data.tfds_pairs."""

    VERSION = tfds.core.Version(VERSION)
    # No dataset package folder (checksums, metadata) belongs to this class; tfds' lookup of
    # one imports `importlib_resources`, which tfds does not install.
    code_path = None

    def _info(self) -> tfds.core.DatasetInfo:
      # Built directly: `dataset_info_from_configs` looks for metadata files next to the
      # builder's module, which a builder defined outside a dataset package does not have.
      return tfds.core.DatasetInfo(
          builder=self,
          description="Blurred/sharp face pairs packed by faceblur.data.tfds_pairs.",
          features=tfds.features.FeaturesDict({
              "blurred": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
              "sharp": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
              "name": tfds.features.Text(),
          }),
          supervised_keys=("blurred", "sharp"),
          disable_shuffling=True,  # records stay in name order, as in the folder
      )

    def _split_generators(self, dl_manager):
      del dl_manager
      return {split: self._generate_examples(root) for split, root in split_roots.items()}

    def _generate_examples(self, root: pathlib.Path):
      pairs = PairedFolder(root)
      for index in range(len(pairs)):
        record = pairs[index]
        yield record["name"], {"blurred": _png_bytes(record["blurred"]),
                               "sharp": _png_bytes(record["sharp"]), "name": record["name"]}

  PairsBuilder.name = name
  return PairsBuilder


def build_pairs_dataset(paired_root: str | pathlib.Path, data_dir: str | pathlib.Path, *,
                        name: str = "faceblur_pairs", splits: tuple[str, ...] = ("train", "test"),
                        overwrite: bool = True) -> pathlib.Path:
  """Writes `paired_root/<split>/{blurred,sharp}/...` as `data_dir/<name>/1.0.0`; returns it.

  Splits without a folder are left out (at least one must exist). With `overwrite` an existing
  copy is rebuilt, so it always matches the folder.
  """
  paired_root = pathlib.Path(paired_root).expanduser()
  split_roots = {split: paired_root / split for split in splits
                 if (paired_root / split).is_dir()}
  if not split_roots:
    raise DataError(f"{paired_root}: none of the split folders {', '.join(splits)} exists")
  builder = _make_builder_class(name, split_roots)(
      data_dir=str(pathlib.Path(data_dir).expanduser()), file_format="array_record")
  mode = (tfds.download.GenerateMode.FORCE_REDOWNLOAD if overwrite
          else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
  with tempfile.TemporaryDirectory() as download_dir:  # nothing is downloaded
    builder.download_and_prepare(download_dir=download_dir,
                                 download_config=tfds.download.DownloadConfig(download_mode=mode))
  return pathlib.Path(builder.data_dir)


def find_prepared(data_dir: str | pathlib.Path, name: str | None = None) -> pathlib.Path:
  """The prepared dataset folder (`<name>/<version>/`) in `data_dir`, or `data_dir` itself."""
  data_dir = pathlib.Path(data_dir).expanduser()
  if (data_dir / "dataset_info.json").exists():
    return data_dir
  if not data_dir.is_dir():
    raise DataError(f"{data_dir}: no such folder")
  pattern = f"{name}/*/dataset_info.json" if name else "*/*/dataset_info.json"
  found = sorted(path.parent for path in data_dir.glob(pattern))
  if not found:
    raise DataError(f"{data_dir}: no prepared dataset (build one with "
                    "faceblur.data.tfds_pairs.build_pairs_dataset)")
  names = {path.parent.name for path in found}
  if len(names) > 1:
    raise DataError(f"{data_dir}: several datasets ({', '.join(sorted(names))}); "
                    "give the path of one")
  return max(found, key=lambda path: tfds.core.Version(path.name)
             if tfds.core.Version.is_valid(path.name) else tfds.core.Version("0.0.0"))


def open_pairs(data_dir: str | pathlib.Path, split: str):
  """A random-access source of decoded records {'blurred', 'sharp', 'name'} (bytes name)."""
  path = find_prepared(data_dir)
  builder = tfds.builder_from_directory(str(path))
  if split.split("[")[0] not in builder.info.splits:
    raise DataError(f"{path}: no split {split!r} (has {', '.join(builder.info.splits)})")
  return builder.as_data_source(split=split)


class TfdsPairs(LazyDataSource):
  """Pairs packed by `build_pairs_dataset`: records {'blurred', 'sharp', 'name'}.

  `data_dir` is the folder given to `build_pairs_dataset` or the `<name>/<version>` folder
  it returned.
  """

  def __init__(self, data_dir: str | os.PathLike, *, split: str = "train"):
    self.data_dir, self.split = pathlib.Path(data_dir).expanduser(), split
    self._length = len(self.source)

  def _open(self):
    return open_pairs(self.data_dir, self.split)

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index: int) -> Record:
    record = self.source[index]
    name = record["name"]
    return {"blurred": np.asarray(record["blurred"], dtype=np.uint8),
            "sharp": np.asarray(record["sharp"], dtype=np.uint8),
            "name": name.decode() if isinstance(name, bytes) else str(name)}

  def __repr__(self) -> str:
    return f"TfdsPairs({str(self.data_dir)!r}, split={self.split!r}, {len(self)} pairs)"
