"""Random-access data sources: `len(source)` and `source[i]` -> a dict of numpy arrays.

grain reads them directly (`grain.MapDataset.source(source)`). Images stay uint8 HxWx3 in
the records (4x smaller than float32 when records cross process boundaries); the pipeline's
transforms convert them. Decoding is lazy: building a source only lists files, and a corrupt
file raises `ImageReadError` naming it when it is read. Training wraps its sources in
`SkipBadRecords`, which replaces such records (and images too small for the crop) instead, so
one bad file among thousands never stops a run. Sources are picklable, so grain worker
processes can use them. The tfds-packed pairs (`TfdsPairs`) are read and written in
`faceblur.data.tfds_pairs`.
"""

import io
import logging
import os
import pathlib
import re
import tempfile
import threading
import zipfile
from typing import Any

import numpy as np

from faceblur.data import image_io
from faceblur.errors import ConfigError, DataError, ImageReadError

Record = dict[str, Any]


def _relative_name(path: pathlib.Path, root: pathlib.Path) -> str:
  return path.relative_to(root).as_posix()


class ImageFolder:
  """Unpaired images under `root` (recursive): records {'image': uint8 HxWx3, 'name': str}."""

  def __init__(self, root: str | os.PathLike):
    self.root = pathlib.Path(root).expanduser()
    self.paths = image_io.list_images(self.root)

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> Record:
    path = self.paths[index]
    return {"image": image_io.load_image(path), "name": _relative_name(path, self.root)}

  def __repr__(self) -> str:
    return f"ImageFolder({str(self.root)!r}, {len(self)} images)"


def _by_key(root: pathlib.Path) -> dict[str, pathlib.Path]:
  """Images under `root` keyed by relative path without suffix (x.png pairs with x.jpg)."""
  keyed: dict[str, pathlib.Path] = {}
  for path in image_io.list_images(root):
    key = _relative_name(path.with_suffix(""), root)
    if key in keyed:
      raise DataError(f"{root}: {key} exists with two extensions "
                      f"({keyed[key].name}, {path.name}); keep one")
    keyed[key] = path
  return keyed


def _match(blurred_root: pathlib.Path, sharp_root: pathlib.Path, prefix: str = ""):
  """(name, blurred path, sharp path) for each key present on both sides."""
  blurred, sharp = _by_key(blurred_root), _by_key(sharp_root)
  unmatched = sorted([path for key, path in blurred.items() if key not in sharp]
                     + [path for key, path in sharp.items() if key not in blurred])
  if unmatched:
    first = unmatched[0]
    other = sharp_root if first.is_relative_to(blurred_root) else blurred_root
    raise DataError(f"{first}: no partner in {other} ({len(unmatched)} unmatched image(s); "
                    "pairs match by relative path, extension aside)")
  return [(prefix + _relative_name(blurred[key], blurred_root), blurred[key], sharp[key])
          for key in sorted(blurred)]


BLURRED_DIRS = ("blurred", "blur")


class FilePairs:
  """(blurred, sharp) image files by name: records {'blurred', 'sharp': uint8 HxWx3, 'name'}.

  A pair of two sizes raises `ImageReadError` naming both files when it is read.
  """

  pairs: list[tuple[str, pathlib.Path, pathlib.Path]]  # (name, blurred path, sharp path)
  root: pathlib.Path

  def __len__(self) -> int:
    return len(self.pairs)

  def __getitem__(self, index: int) -> Record:
    name, blurred_path, sharp_path = self.pairs[index]
    blurred, sharp = image_io.load_image(blurred_path), image_io.load_image(sharp_path)
    if blurred.shape != sharp.shape:
      raise ImageReadError(f"{blurred_path} and {sharp_path}: sizes differ "
                           f"({blurred.shape[0]}x{blurred.shape[1]} vs "
                           f"{sharp.shape[0]}x{sharp.shape[1]})")
    return {"blurred": blurred, "sharp": sharp, "name": name}

  def __repr__(self) -> str:
    return f"{type(self).__name__}({str(self.root)!r}, {len(self)} pairs)"


class PairedFolder(FilePairs):
  """Aligned (blurred, sharp) pairs: records {'blurred', 'sharp': uint8 HxWx3, 'name': str}.

  Layouts:
    root/blurred/**  + root/sharp/**            matched by relative path (any extensions);
                                                 `blur/` is accepted for `blurred/`
    root/<sequence>/blur/* + root/<sequence>/sharp/*   GoPro; names '<sequence>/<file>'
  """

  def __init__(self, root: str | os.PathLike):
    self.root = pathlib.Path(root).expanduser()
    if not self.root.is_dir():
      raise DataError(f"{self.root}: no such folder")
    blurred_dir = next((self.root / name for name in BLURRED_DIRS
                        if (self.root / name).is_dir()), None)
    if blurred_dir is not None and (self.root / "sharp").is_dir():
      self.pairs = _match(blurred_dir, self.root / "sharp")
      return
    sequences = sorted(path for path in self.root.iterdir()
                       if path.is_dir() and ((path / "blur").is_dir() or
                                             (path / "sharp").is_dir()))
    if not sequences:
      raise DataError(f"{self.root}: expected blurred/ and sharp/ sub-folders, or "
                      "<sequence>/blur/ and <sequence>/sharp/ (the GoPro layout)")
    self.pairs = []
    for sequence in sequences:
      missing = [name for name in ("blur", "sharp") if not (sequence / name).is_dir()]
      if missing:
        raise DataError(f"{sequence}: has no {missing[0]}/ folder to pair with")
      self.pairs.extend(_match(sequence / "blur", sequence / "sharp", f"{sequence.name}/"))


# The benchmarks' official test sets, as their authors distribute them. Their pair counts are
# those of the published rows; `benchmark_count_note` says when a folder holds another number.
GOPRO_TEST_PAIRS = 1111
HIDE_TEST_PAIRS = 2025
REALBLUR_TEST_PAIRS = 980
HIDE_TEST_FOLDERS = ("test-close-ups", "test-long-shot")


class GoPro(PairedFolder):
  """GoPro (Nah et al.) as distributed: `GOPRO_Large/{train,test}/<sequence>/{blur,sharp}/`.

  `blur/` holds the benchmark's inputs, averaged in sRGB; `blur_gamma/` (averaged in linear
  light) is never read. Full resolution, 1280x720; names '<sequence>/<file>'. `root` may be
  GOPRO_Large (then `split` picks train or test) or a split folder itself.
  """

  def __init__(self, root: str | os.PathLike, *, split: str = "test"):
    root = pathlib.Path(root).expanduser()
    if split and (root / split).is_dir():
      root = root / split
    if not root.is_dir():
      raise DataError(f"{root}: no such folder (GoPro: GOPRO_Large/test/<sequence>/blur/)")
    if not any((path / "blur").is_dir() for path in root.iterdir() if path.is_dir()):
      raise DataError(f"{root}: no <sequence>/blur/ folders (GoPro's layout: "
                      "GOPRO_Large/test/<sequence>/{blur,sharp}/; blur_gamma is not the "
                      "benchmark's input)")
    super().__init__(root)


class Hide(FilePairs):
  """HIDE (Shen et al.) as distributed: `HIDE_dataset/GT/*.png` (sharp),
  `test/test-close-ups/`, `test/test-long-shot/` and `train/` (blurred, same file names).

  `split`: 'test' (both test folders, 2,025 pairs), one of them by name, or 'train'. Names
  '<test folder>/<file>' ('train/<file>').
  """

  def __init__(self, root: str | os.PathLike, *, split: str = "test"):
    self.root = pathlib.Path(root).expanduser()
    if not (self.root / "GT").is_dir():
      raise DataError(f"{self.root}: no GT/ folder (HIDE's layout: HIDE_dataset/GT/, "
                      "HIDE_dataset/test/test-close-ups/, HIDE_dataset/test/test-long-shot/)")
    choices = ("test", *HIDE_TEST_FOLDERS, "train")
    if split not in choices:
      raise DataError(f"HIDE has no split {split!r} (one of {', '.join(choices)})")
    folders = {"test": [self.root / "test" / name for name in HIDE_TEST_FOLDERS],
               "train": [self.root / "train"]}.get(split, [self.root / "test" / split])
    gt = {path.name: path for path in image_io.list_images(self.root / "GT")
          if path.parent == self.root / "GT"}
    self.pairs = []
    for folder in folders:
      for path in image_io.list_images(folder):
        if path.name not in gt:
          raise DataError(f"{path}: no ground truth {self.root / 'GT' / path.name}")
        self.pairs.append((f"{folder.name}/{path.relative_to(folder).as_posix()}", path,
                           gt[path.name]))


class RealBlur(FilePairs):
  """RealBlur-J or -R (Rim et al.) as distributed: the dataset folder holding
  `RealBlur_{J,R}_{train,test}_list.txt`, each line '<gt path> <blur path>' relative to it
  (e.g. RealBlur-J_ECC_IMCORR_centroid_itensity_ref/scene003/gt/gt_1.png). Names
  '<scene>/<blur file>', e.g. 'scene003/blur_1.png'.
  """

  def __init__(self, root: str | os.PathLike, *, variant: str, split: str = "test"):
    self.root = pathlib.Path(root).expanduser()
    list_file = self.root / f"RealBlur_{variant}_{split}_list.txt"
    if not list_file.is_file():
      raise DataError(f"{list_file}: no such list file (RealBlur's folder holds "
                      f"RealBlur_{variant}_{{train,test}}_list.txt and the scene folders)")
    self.pairs = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
      fields = line.split()
      if not fields:
        continue
      if len(fields) < 2:
        raise DataError(f"{list_file}:{number}: expected '<gt path> <blur path>', got {line!r}")
      gt, blurred = self.root / fields[0], self.root / fields[1]
      self.pairs.append((f"{blurred.parent.parent.name}/{blurred.name}", blurred, gt))


def benchmark_count_note(source, expected: int, what: str) -> str:
  """'' when `source` holds the benchmark's pair count, else one line saying it does not."""
  if len(source) == expected:
    return ""
  return (f"{source.root}: {len(source)} pairs, but {what} has {expected:,}; the published "
          "rows are over all of them")


class LazyDataSource:
  """Holds a tfds data source opened on first use and dropped when pickled.

  An array_record reader holds open files; grain worker processes reopen their own.
  """

  _source = None

  def _open(self):
    raise NotImplementedError

  @property
  def source(self):
    if self._source is None:
      self._source = self._open()
    return self._source

  def __getstate__(self):
    state = dict(self.__dict__)
    state.pop("_source", None)
    return state


CELEB_A_HELP = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
# What tfds' celeb_a builder downloads (its download keys -> the files CelebA distributes).
CELEB_A_FILES = {
    "img_align_celeba": "img_align_celeba.zip",
    "list_eval_partition": "list_eval_partition.txt",
    "list_attr_celeba": "list_attr_celeba.txt",
    "landmarks_celeba": "list_landmarks_align_celeba.txt",
    "identity_celeba": "identity_CelebA.txt",
}
_CELEB_A_BLURRY_CACHE: dict[tuple[str, str], np.ndarray] = {}


def _celeb_a_dir(data_dir: str | os.PathLike | None, split: str) -> pathlib.Path:
  """The prepared celeb_a folder; a one-line DataError on how to prepare it otherwise."""
  import tensorflow_datasets as tfds  # noqa: PLC0415 — ~0.4 s, only when CelebA is used

  kwargs = {"data_dir": str(pathlib.Path(data_dir).expanduser())} if data_dir else {}
  builder = tfds.builder("celeb_a", **kwargs)
  where = pathlib.Path(builder.data_dir).parents[1]  # builder.data_dir: <root>/celeb_a/<version>
  if not builder.is_prepared():
    raise DataError(
        f"celeb_a is not prepared in {where}: put CelebA's files ("
        f"{', '.join(CELEB_A_FILES.values())}; {CELEB_A_HELP}) in a folder F and run "
        f"faceblur.data.sources.prepare_celeb_a('F', '{where}') (no TensorFlow needed)")
  file_format = str(getattr(builder.info.file_format, "value", builder.info.file_format))
  if file_format != "array_record":
    raise DataError(f"{builder.data_dir}: celeb_a is stored as {file_format}, but reading it "
                    "without TensorFlow needs array_record: prepare a copy in another data_dir "
                    "with faceblur.data.sources.prepare_celeb_a")
  if split.split("[")[0] not in builder.info.splits:
    raise DataError(f"celeb_a in {where} has no split {split!r} "
                    f"(has {', '.join(builder.info.splits)})")
  return pathlib.Path(builder.data_dir)


def _celeb_a_blurry(dataset_dir: pathlib.Path, split: str) -> np.ndarray:
  """The `Blurry` attribute of every record of `split`, read without decoding any image.

  Cached in memory and, where the dataset folder is writable, in a .npy file beside it: the
  scan reads ~2,600 records/s on 2 cores, about a minute for the 162,770 training records.
  """
  key = (str(dataset_dir), split)
  if key in _CELEB_A_BLURRY_CACHE:
    return _CELEB_A_BLURRY_CACHE[key]
  cache_file = dataset_dir / f"faceblur_blurry_{re.sub(r'[^A-Za-z0-9_.-]', '_', split)}.npy"
  if cache_file.exists():
    blurry = np.load(cache_file)
  else:
    import tensorflow_datasets as tfds  # noqa: PLC0415

    attributes_only = tfds.builder_from_directory(str(dataset_dir)).as_data_source(
        split=split, decoders={"image": tfds.decode.SkipDecoding()})
    blurry = np.fromiter((bool(attributes_only[i]["attributes"]["Blurry"])
                          for i in range(len(attributes_only))), dtype=bool,
                         count=len(attributes_only))
    try:
      temp_file = cache_file.with_suffix(f".{os.getpid()}.tmp.npy")
      np.save(temp_file, blurry)
      os.replace(temp_file, cache_file)
    except OSError:
      pass  # a read-only dataset folder: keep the in-memory copy only
  _CELEB_A_BLURRY_CACHE[key] = blurry
  return blurry


class _LocalCelebAFiles:
  """Stands in for tfds' download manager: CelebA's files from a local folder, unzipped with
  Python's zipfile (tfds' own archive reader needs TensorFlow)."""

  def __init__(self, files_dir: pathlib.Path):
    self.files_dir = files_dir

  def download(self, urls: dict[str, str]) -> dict[str, pathlib.Path]:
    return {key: self.files_dir / CELEB_A_FILES[key] for key in urls}

  def iter_archive(self, path: pathlib.Path):
    folder = path.with_suffix("")
    if folder.is_dir():  # an already extracted img_align_celeba/
      for image_path in sorted(folder.iterdir()):
        yield image_path.name, io.BytesIO(image_path.read_bytes())
      return
    with zipfile.ZipFile(path) as archive:
      for name in archive.namelist():
        if not name.endswith("/"):
          yield name, io.BytesIO(archive.read(name))


def prepare_celeb_a(files_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                    ) -> pathlib.Path:
  """Builds tfds' `celeb_a` (array_record) from CelebA's downloaded files, without TensorFlow.

  `files_dir` holds img_align_celeba.zip (or its extracted img_align_celeba/ folder) and the
  four .txt files. The records are exactly those of tfds' builder (its own example
  generator runs); only the file access is replaced. Returns the prepared folder.
  """
  import tensorflow_datasets as tfds  # noqa: PLC0415

  files_dir = pathlib.Path(files_dir).expanduser()
  for key, file_name in CELEB_A_FILES.items():
    path = files_dir / file_name
    if not path.exists() and not (key == "img_align_celeba" and path.with_suffix("").is_dir()):
      raise DataError(f"{path}: missing (CelebA's files: {', '.join(CELEB_A_FILES.values())})")

  class LocalCelebA(tfds.builder_cls("celeb_a"), skip_registration=True):
    name = "celeb_a"
    code_path = None  # tfds' lookup of the package's checksums imports importlib_resources

    def _split_generators(self, dl_manager):
      del dl_manager
      return super()._split_generators(_LocalCelebAFiles(files_dir))

  kwargs = {"data_dir": str(pathlib.Path(data_dir).expanduser())} if data_dir else {}
  builder = LocalCelebA(file_format="array_record", **kwargs)
  with tempfile.TemporaryDirectory() as download_dir:
    builder.download_and_prepare(download_dir=download_dir)
  return pathlib.Path(builder.data_dir)


class CelebA(LazyDataSource):
  """CelebA through tensorflow-datasets' `celeb_a` (array_record, read without TensorFlow).

  Records {'image': uint8 218x178x3, 'name': 'celeb_a/<split>/<index>'}. `blurry=True` keeps
  the photos with the `Blurry` attribute, `False` the others, `None` all of them; the
  attribute scan skips image decoding and is cached.
  """

  def __init__(self, *, split: str = "train", blurry: bool | None = None,
               data_dir: str | os.PathLike | None = None):
    self.split, self.blurry = split, blurry
    self.dataset_dir = _celeb_a_dir(data_dir, split)
    if blurry is None:
      self.indices = None
      self._length = len(self.source)
    else:
      self.indices = np.flatnonzero(_celeb_a_blurry(self.dataset_dir, split) == bool(blurry))
      self._length = len(self.indices)

  def _open(self):
    import tensorflow_datasets as tfds  # noqa: PLC0415

    return tfds.builder_from_directory(str(self.dataset_dir)).as_data_source(split=self.split)

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index: int) -> Record:
    if not -self._length <= index < self._length:
      raise IndexError(f"index {index} out of range for {self._length} records")
    index %= self._length
    record_index = int(self.indices[index]) if self.indices is not None else index
    record = self.source[record_index]
    return {"image": np.asarray(record["image"], dtype=np.uint8),
            "name": f"celeb_a/{self.split}/{record_index:06d}"}

  def __repr__(self) -> str:
    return f"CelebA(split={self.split!r}, blurry={self.blurry}, {len(self)} images)"


_WARNED: set[str] = set()  # the skipped-record warnings this process has printed
_WARNED_LOCK = threading.Lock()  # grain prepares batches in several threads


# Bytes of records one `CachedRecords` keeps: every demo and study source whole, a sliver of a
# large one (where a cache could not pay anyway).
CACHE_BYTES = 256 << 20


class CachedRecords:
  """A source whose records depend only on their index, each kept after its first read.

  The generated sources (demo faces, camera and kernel blur) render a record on every read,
  and training reads each one once an epoch, on the cores the train step needs. The records
  read first are kept, up to `max_bytes`, with read-only arrays, so no consumer can change
  what the next one reads. Each process keeps its own: a pickled copy (a grain worker's)
  starts empty.
  """

  def __init__(self, source, *, max_bytes: int = CACHE_BYTES):
    self.source, self.max_bytes = source, int(max_bytes)
    self._start()

  def _start(self) -> None:
    self._records: dict[int, Record] = {}
    self._bytes = 0
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> Record:
    index = int(index)
    record = self._records.get(index)
    if record is not None:
      return dict(record)
    record = self.source[index]
    size = sum(value.nbytes for value in record.values() if isinstance(value, np.ndarray))
    with self._lock:
      if index not in self._records and self._bytes + size <= self.max_bytes:
        kept = {key: _read_only(value) for key, value in record.items()}
        self._records[index], self._bytes = kept, self._bytes + size
        record = dict(kept)
    return record

  def __getattr__(self, name: str):
    if name == "source":  # unpickling, before __setstate__ ran
      raise AttributeError(name)
    return getattr(self.source, name)

  def __getstate__(self) -> dict:
    return {"source": self.source, "max_bytes": self.max_bytes}

  def __setstate__(self, state: dict) -> None:
    self.source, self.max_bytes = state["source"], state["max_bytes"]
    self._start()

  def __repr__(self) -> str:
    return repr(self.source)


def _read_only(value):
  if isinstance(value, np.ndarray):
    value = value.view()
    value.flags.writeable = False
  return value


class SkipBadRecords:
  """`source` with its unusable records replaced, so one bad file never stops a long run.

  A record that cannot be read (`ImageReadError`: a corrupt or truncated file, a pair of two
  sizes) or whose images are smaller than `min_size` is replaced by the next usable record
  (index + 1, + 2, ..., wrapping around), with one warning naming it (once per process, even
  when two sources share a folder; grain worker processes each warn once). The replacement
  depends only on the files, so batch k stays a pure function of (seed, k) and a resumed run
  sees exactly the batches of an uninterrupted one. Building it reads records up to the
  first usable one, so a source with none fails at start-up, in one line naming it.
  """

  def __init__(self, source, *, min_size: int = 0, min_size_reason: str = ""):
    self.source, self.min_size = source, int(min_size or 0)
    self.min_size_reason = min_size_reason
    self._unusable: set[int] = set()  # indices found bad in this process (files do not heal)
    if len(source):
      self[0]

  def __len__(self) -> int:
    return len(self.source)

  def _where(self) -> str:
    return str(getattr(self.source, "root", None) or repr(self.source))

  def _problem(self, index: int) -> tuple[Record | None, str]:
    """(record, '') if record `index` is usable, else (None, why not) in one line."""
    try:
      record = self.source[index]
    except ImageReadError as error:
      return None, str(error)
    sides = [min(value.shape[:2]) for key, value in record.items()
             if key in ("image", "blurred", "sharp")]
    if self.min_size and sides and min(sides) < self.min_size:
      image = next(record[key] for key in ("image", "blurred", "sharp") if key in record)
      reason = f" ({self.min_size_reason})" if self.min_size_reason else ""
      return None, (f"{self._where()}/{record.get('name', index)}: {image.shape[0]}x"
                    f"{image.shape[1]} px is smaller than {self.min_size} px{reason}")
    return record, ""

  def __getitem__(self, index: int) -> Record:
    num_records = len(self.source)
    index = int(index) % num_records
    first_problem = ""
    for offset in range(num_records):
      candidate = (index + offset) % num_records
      if candidate in self._unusable:
        continue
      record, problem = self._problem(candidate)
      if record is not None:
        return record
      self._unusable.add(candidate)
      with _WARNED_LOCK:
        warn = problem not in _WARNED
        _WARNED.add(problem)
      if warn:
        logging.warning("skipped %s", problem)
      first_problem = first_problem or problem
    raise DataError(f"{self._where()}: none of its {num_records} images is usable"
                    + (f" (e.g. {first_problem})" if first_problem else ""))

  def __repr__(self) -> str:
    return f"SkipBadRecords({self.source!r}, min_size={self.min_size})"


def train_test_split(num: int, *, test_fraction: float = 0.2,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Sorted train and test indices of a seeded permutation (the paper's 80/20 split)."""
  if not 0 <= test_fraction < 1:
    raise ConfigError(f"test_fraction={test_fraction} must be in [0, 1)")
  permutation = np.random.default_rng(seed).permutation(num)
  num_test = int(round(num * test_fraction))
  return np.sort(permutation[num_test:]), np.sort(permutation[:num_test])
