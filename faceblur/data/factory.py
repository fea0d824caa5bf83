"""Builds data sources from config specs (`source_spec`, used by every config)."""

import pathlib

import ml_collections

from faceblur.errors import ConfigError

UNPAIRED_KINDS = ("folder", "celeb_a", "demo_sharp", "demo_blurred")
PAIRED_KINDS = ("paired_folder", "tfds_pairs", "kernel_blurred", "camera_blurred")


def source_spec(kind: str, path: str = "", **kwargs) -> ml_collections.ConfigDict:
  """A data-source spec with every field present (configs override what they need).

  kinds: folder, paired_folder, celeb_a, tfds_pairs; demo_sharp (real demo faces) and
  demo_blurred (demo faces through the simulated camera, `camera_blur`), whose `split` names
  a group of base faces (`demo.BASE_GROUPS`: train, blurred, test or all); kernel_blurred
  (pairs made by blurring a `base` source with random camera-shake kernels, the paper's
  baseline) and camera_blurred (pairs made by the simulated camera). `max_shake` > 0
  overrides the camera's shake length (a fraction of the side); `size` > 0 sizes demo faces.
  """
  spec = dict(kind=kind, path=path, split="train", blurry=None, count=0, seed=0, base=None,
              max_blur_length=0.0, max_shake=0.0, size=0)
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


def make_source(spec, *, image_size: int | None = None):
  """An unpaired source: records {'image': uint8 HxWx3, 'name': str}.

  `image_size` sizes generated images (the demo); files are returned as stored.
  """
  from faceblur.data import camera_blur, demo, sources  # noqa: PLC0415 — configs import this

  spec = _spec(spec)
  if spec.kind == "folder":
    return sources.ImageFolder(_required_path(spec))
  if spec.kind == "celeb_a":
    return sources.CelebA(split=spec.split, blurry=spec.blurry, data_dir=spec.path or None)
  if spec.kind in ("demo_sharp", "demo_blurred"):
    faces = demo.DemoFaces(size=spec.size or image_size or 64, count=spec.count or 400,
                           seed=spec.seed, group=spec.split or "all")
    if spec.kind == "demo_sharp":
      return faces
    return camera_blur.CameraBlurredImages(faces, seed=spec.seed, model=_camera_model(spec))
  raise _wrong_kind(spec.kind, paired_wanted=False)


def _camera_model(spec):
  from faceblur.data import camera_blur  # noqa: PLC0415

  if spec.max_shake > 0:
    return camera_blur.CameraModel(max_shake=spec.max_shake)
  return camera_blur.CameraModel()


def make_paired_source(spec, *, image_size: int | None = None):
  """A paired source: records {'blurred', 'sharp': uint8 HxWx3, 'name': str}.

  A `paired_folder` path may hold `train/` and `test/` sub-folders (what synthesis writes):
  `split` picks one.
  """
  from faceblur.data import camera_blur, demo, sources  # noqa: PLC0415

  spec = _spec(spec)
  if spec.kind == "paired_folder":
    root = _required_path(spec)
    if spec.split and (root / spec.split).is_dir():
      root = root / spec.split
    return sources.PairedFolder(root)
  if spec.kind == "tfds_pairs":
    return sources.TfdsPairs(_required_path(spec), split=spec.split)
  if spec.kind == "kernel_blurred":
    if not spec.base:
      raise ConfigError("data source of kind 'kernel_blurred' needs a base source (set .base)")
    base = make_source(spec.base, image_size=image_size)
    return demo.KernelBlurredPairs(base, seed=spec.seed,
                                   max_blur_length=spec.max_blur_length or None)
  if spec.kind == "camera_blurred":
    if not spec.base:
      raise ConfigError("data source of kind 'camera_blurred' needs a base source (set .base)")
    base = make_source(spec.base, image_size=image_size)
    return camera_blur.CameraBlurredPairs(base, seed=spec.seed, model=_camera_model(spec))
  raise _wrong_kind(spec.kind, paired_wanted=True)


def _wrong_kind(kind: str, *, paired_wanted: bool) -> ConfigError:
  wanted, other = (PAIRED_KINDS, UNPAIRED_KINDS) if paired_wanted else (UNPAIRED_KINDS,
                                                                         PAIRED_KINDS)
  if kind in other:
    return ConfigError(f"data source kind {kind!r} is {'un' if paired_wanted else ''}paired; "
                       f"one of {', '.join(wanted)} is needed here")
  return ConfigError(f"unknown data source kind {kind!r}; "
                     f"choose one of {', '.join(UNPAIRED_KINDS + PAIRED_KINDS)}")
