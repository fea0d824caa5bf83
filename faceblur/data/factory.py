"""Builds data sources from config specs (`source_spec`, used by every config).

Each `kind` is registered in `SOURCES` with whether it gives pairs; its code is imported only
when it is built, since every config imports this module.
"""

import dataclasses
import logging
import pathlib
from collections.abc import Callable

import ml_collections

from faceblur.errors import ConfigError
from faceblur.registry import Registry


@dataclasses.dataclass(frozen=True)
class SourceKind:
  build: Callable[[ml_collections.ConfigDict, int | None], object]  # (spec, image_size)
  paired: bool
  generated: bool = False  # makes its images (demo faces, synthetic blur): needs no path


SOURCES: Registry[SourceKind] = Registry(
    "unknown data source kind {name!r}; choose one of {choices}", entry=SourceKind)


def source_spec(kind: str, path: str = "", **kwargs) -> ml_collections.ConfigDict:
  """A data-source spec with every field present (configs override what they need).

  kinds: folder, paired_folder, celeb_a, tfds_pairs, wider_face; the deblurring benchmarks'
  official test sets gopro, hide, realblur_j, realblur_r (their authors' layouts); demo_sharp
  (real demo faces) and demo_blurred (demo faces through the simulated camera,
  `camera_blur`), whose `split` names a group of base faces (`demo.BASE_GROUPS`: train,
  blurred, test or all); kernel_blurred (pairs made by blurring a `base` source with random
  camera-shake kernels, the paper's baseline) and camera_blurred (pairs made by the simulated
  camera). `max_shake` > 0 overrides the camera's shake length (a fraction of the side);
  `camera` (a dict of `camera_blur.CameraModel` fields) overrides others, e.g. to switch a
  stage of the camera off; `size` > 0 sizes demo faces.
  """
  spec = dict(kind=kind, path=path, split="train", blurry=None, count=0, seed=0, base=None,
              max_blur_length=0.0, max_shake=0.0, camera=None, size=0)
  unknown = set(kwargs) - set(spec)
  if unknown:
    raise ConfigError(f"unknown data source key {sorted(unknown)[0]!r}; known: {', '.join(spec)}")
  spec.update(kwargs)
  return ml_collections.ConfigDict(spec)


def _spec(spec) -> ml_collections.ConfigDict:
  """Fills the fields a partial spec (e.g. a `base` given as a dict) leaves out."""
  spec = spec.to_dict() if isinstance(spec, ml_collections.ConfigDict) else dict(spec)
  return source_spec(**spec)


def _required_path(spec) -> pathlib.Path:
  if not spec.path:
    raise ConfigError(f"data source of kind {spec.kind!r} needs a path (set its .path)")
  return pathlib.Path(spec.path).expanduser()


def _build(spec, image_size: int | None, *, paired: bool):
  spec = _spec(spec)
  kind = SOURCES.get(spec.kind)
  if kind.paired != paired:
    wanted = [name for name in SOURCES if SOURCES.get(name).paired == paired]
    raise ConfigError(f"data source kind {spec.kind!r} is {'un' if paired else ''}paired; "
                      f"one of {', '.join(wanted)} is needed here")
  source = kind.build(spec, image_size)
  if kind.generated:  # rendered on every read: kept after the first (`sources.CachedRecords`)
    from faceblur.data import sources  # noqa: PLC0415

    source = sources.CachedRecords(source)
  return source


def is_set(spec) -> bool:
  """Whether a spec names data: a kind, and a path unless the kind makes its own images."""
  spec = _spec(spec)
  return bool(spec.kind) and (bool(spec.path) or SOURCES.get(spec.kind).generated)


def make_source(spec, *, image_size: int | None = None):
  """An unpaired source: records {'image': uint8 HxWx3, 'name': str}.

  `image_size` sizes generated images (the demo); files are returned as stored.
  """
  return _build(spec, image_size, paired=False)


def make_paired_source(spec, *, image_size: int | None = None):
  """A paired source: records {'blurred', 'sharp': uint8 HxWx3, 'name': str}.

  A `paired_folder` path may hold `train/` and `test/` sub-folders (what synthesis writes):
  `split` picks one.
  """
  return _build(spec, image_size, paired=True)


# Unpaired kinds.


@SOURCES.register("folder", paired=False)
def _folder(spec, image_size):
  from faceblur.data import sources  # noqa: PLC0415

  return sources.ImageFolder(_required_path(spec))


@SOURCES.register("celeb_a", paired=False)
def _celeb_a(spec, image_size):
  from faceblur.data import sources  # noqa: PLC0415

  return sources.CelebA(split=spec.split, blurry=spec.blurry, data_dir=spec.path or None)


@SOURCES.register("wider_face", paired=False)
def _wider_face(spec, image_size):
  """WIDER FACE's photos with their face boxes (records also hold 'faces'); `split` train/val."""
  from faceblur.data import wider_face  # noqa: PLC0415

  return wider_face.WiderFace(_required_path(spec), split=spec.split or "val")


def _demo_faces(spec, image_size):
  from faceblur.data import demo  # noqa: PLC0415

  return demo.DemoFaces(size=spec.size or image_size or 64, count=spec.count or 400,
                        seed=spec.seed, group=spec.split or "all")


SOURCES.register("demo_sharp", paired=False, generated=True)(_demo_faces)


@SOURCES.register("demo_blurred", paired=False, generated=True)
def _demo_blurred(spec, image_size):
  from faceblur.data import camera_blur  # noqa: PLC0415

  return camera_blur.CameraBlurredImages(_demo_faces(spec, image_size), seed=spec.seed,
                                         model=_camera_model(spec))


def _camera_model(spec):
  from faceblur.data import camera_blur  # noqa: PLC0415

  fields = {} if spec.max_shake <= 0 else {"max_shake": spec.max_shake}
  overrides = spec.camera.to_dict() if isinstance(spec.camera, ml_collections.ConfigDict) \
      else dict(spec.camera or {})
  known = {field.name for field in dataclasses.fields(camera_blur.CameraModel)}
  for name, value in overrides.items():
    if name not in known:
      raise ConfigError(f"unknown camera field {name!r} in a data source's .camera; known: "
                        f"{', '.join(sorted(known))}")
    fields[name] = tuple(value) if isinstance(value, list) else value
  try:
    return camera_blur.CameraModel(**fields)
  except ValueError as error:
    raise ConfigError(f"data source {spec.kind!r}: {error}") from None


# Paired kinds.


@SOURCES.register("paired_folder", paired=True)
def _paired_folder(spec, image_size):
  from faceblur.data import sources  # noqa: PLC0415

  root = _required_path(spec)
  if spec.split and (root / spec.split).is_dir():
    root = root / spec.split
  return sources.PairedFolder(root)


@SOURCES.register("tfds_pairs", paired=True)
def _tfds_pairs(spec, image_size):
  from faceblur.data import tfds_pairs  # noqa: PLC0415 — imports tensorflow_datasets

  return tfds_pairs.TfdsPairs(_required_path(spec), split=spec.split)


def _base(spec, image_size):
  """The unpaired source a synthetic-pairs kind blurs."""
  if not spec.base:
    raise ConfigError(f"data source of kind {spec.kind!r} needs a base source (set .base)")
  return make_source(spec.base, image_size=image_size)


@SOURCES.register("kernel_blurred", paired=True, generated=True)
def _kernel_blurred(spec, image_size):
  from faceblur.data import demo  # noqa: PLC0415

  return demo.KernelBlurredPairs(_base(spec, image_size), seed=spec.seed,
                                 max_blur_length=spec.max_blur_length or None)


@SOURCES.register("camera_blurred", paired=True, generated=True)
def _camera_blurred(spec, image_size):
  from faceblur.data import camera_blur  # noqa: PLC0415

  return camera_blur.CameraBlurredPairs(_base(spec, image_size), seed=spec.seed,
                                        model=_camera_model(spec))


# The deblurring benchmarks' official test sets.


def _benchmark(source, expected: int, what: str, split: str):
  """The source, with one warning when a test split does not hold the benchmark's pairs."""
  from faceblur.data import sources  # noqa: PLC0415

  note = sources.benchmark_count_note(source, expected, what) if split == "test" else ""
  if note:
    logging.warning("%s", note)
  return source


@SOURCES.register("gopro", paired=True)
def _gopro(spec, image_size):
  """GoPro's `GOPRO_Large` (or its split folder): `<sequence>/blur` (not blur_gamma) + sharp."""
  from faceblur.data import sources  # noqa: PLC0415

  split = spec.split or "test"
  return _benchmark(sources.GoPro(_required_path(spec), split=split), sources.GOPRO_TEST_PAIRS,
                    "GoPro's test set", split)


@SOURCES.register("hide", paired=True)
def _hide(spec, image_size):
  """HIDE_dataset: test/test-close-ups + test/test-long-shot against GT/."""
  from faceblur.data import sources  # noqa: PLC0415

  split = spec.split or "test"
  return _benchmark(sources.Hide(_required_path(spec), split=split), sources.HIDE_TEST_PAIRS,
                    "HIDE's test set", split)


def _realblur(variant: str):
  def build(spec, image_size):
    from faceblur.data import sources  # noqa: PLC0415

    split = spec.split or "test"
    return _benchmark(sources.RealBlur(_required_path(spec), variant=variant, split=split),
                      sources.REALBLUR_TEST_PAIRS, f"RealBlur-{variant}'s test list", split)
  build.__doc__ = f"RealBlur-{variant}: the pairs its RealBlur_{variant}_<split>_list.txt names."
  return build


SOURCES.register("realblur_j", paired=True)(_realblur("J"))
SOURCES.register("realblur_r", paired=True)(_realblur("R"))
