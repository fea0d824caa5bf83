"""The `evaluate` job: the paper's Table 1 (PSNR/SSIM) and Table 2 (face-detection success
rate), on any paired test set and on unpaired real blurred photos, for any set of methods, and
Table 3 (identity preservation, `faceblur.evaluate.identity`) on the paired sets.

Table 2 counts with two rules (`faceblur.evaluate.detection_protocol`): any face found, and the
ground truth's face found (IoU >= 0.5 with the detector's box on the ground-truth image); with
`second_detector`, a second detector's rates too, so the table does not rest on one detector.
Each comparison "a-b" in `comparisons` adds, per paired set, the mean per-face difference of
every metric with its paired bootstrap interval (`faceblur.evaluate.comparisons`): the tables
give means, the intervals say which gaps the choice of test faces could not erase.

Table 1 is scored under the config's `protocol` (`faceblur.evaluate.protocols`: faceblur's
own, or the GoPro/HIDE or RealBlur benchmarks'), named in every table header. A method of kind
`folder` is another codebase's outputs read from a folder (`faceblur.evaluate.method_outputs`);
`save_restored` writes every method's restored images as PNGs for other codebases to score.

Writes into the output folder: report.md and report.json (both tables, image counts, the
detector and its threshold, versions, wall time), one figure per test set like the paper's
Figures 6-8 (ground truth | blurred | each method, detections drawn), and a per-image CSV.

An unreadable test image is skipped with one warning, counted in the report, and makes the
job exit non-zero once the report is written. On SIGINT/SIGTERM the images restored so far are
kept in `<output>/resume/`, and the same command goes on from there; that folder is removed
when the report is complete.
"""

import concurrent.futures
import contextlib
import csv
import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import pathlib
import shutil
import time
from collections.abc import Callable

import ml_collections
import numpy as np
from tqdm import tqdm

from faceblur import blur_realism, detectors, ops
from faceblur.console import warn
from faceblur.data import augment, factory
from faceblur.errors import ConfigError, DataError, FaceblurError, ImageReadError
from faceblur.evaluate import (
  classical,
  comparisons,
  detection_protocol,
  identity,
  intervals,
  method_outputs,
  protocols,
)
from faceblur.evaluate.report import write_reports
from faceblur.image_grid import save_grid
from faceblur.images import as_rgb
from faceblur.inference import FaceRestorer, Restorer
from faceblur.registry import Registry
from faceblur.train.loop import Interruption, interruptible

RestoreFn = Callable[[np.ndarray], np.ndarray]  # HxWx3 float [0, 1] -> same
# Several HxWx3 images -> each restored, as `RestoreFn` restores it.
BatchRestoreFn = Callable[[list[np.ndarray]], list[np.ndarray]]
# Images per unit of work of a method with a batch path: one network call for small faces,
# and the unit between two interruption checks and resume-cache writes.
RESTORE_BATCH = 16
# Images per `detect_batch` call (MTCNN runs them together, dlib one by one).
DETECT_BATCH = 16
# Fewest face descriptors (faces x columns, ground truth included) that a set's Table 3 must
# compute to start `identity_processes` worker processes: a worker's start-up costs about as
# much CPU as 20 descriptors.
PROCESSES_MIN_DESCRIPTORS = 64


@dataclasses.dataclass
class Method:
  """`restore_batch` (None: `restore` image by image) restores a unit of work at once: a
  trained network takes same-size images together in one call. A method with `outputs` (kind
  `folder`) restores nothing: its images are read by name from another codebase's folder."""
  name: str
  label: str
  restore: RestoreFn | None
  restore_batch: BatchRestoreFn | None = None
  fingerprint: str = ""  # a trained method's weights (`Restorer.fingerprint`)
  outputs: method_outputs.OutputFolder | None = None
  aligned: bool = True  # False: the blurred input itself, which RealBlur scores unaligned

  @property
  def batch_size(self) -> int:
    """Images per unit of work: one where images go through `restore` singly, so an
    interruption stops within an image's time."""
    return 1 if self.restore_batch is None else RESTORE_BATCH

  def restore_all(self, images: list[np.ndarray]) -> list[np.ndarray]:
    if self.restore_batch is None:
      return [self.restore(image) for image in images]
    return self.restore_batch(images)


# `methods.<name>.kind` -> a function of the method's spec that returns its restore function.
METHODS: Registry[Callable[[ml_collections.ConfigDict], RestoreFn]] = Registry(
    "methods.{key}.kind={name!r} is not one of {choices}")


@METHODS.register("identity")
def _identity(spec: ml_collections.ConfigDict) -> RestoreFn:
  return lambda image: image


@METHODS.register("richardson_lucy")
def _richardson_lucy(spec: ml_collections.ConfigDict) -> RestoreFn:
  def restore(image: np.ndarray) -> np.ndarray:
    return classical.richardson_lucy(image, classical.estimate_motion_psf(image))

  def restore_images(images: list[np.ndarray]) -> list[np.ndarray]:
    """Each image as `restore` restores it, on one thread per core: its FFTs and array
    arithmetic release the GIL."""
    with concurrent.futures.ThreadPoolExecutor(ops.host_threads()) as pool:
      return list(pool.map(restore, images))

  restore.restore_images = restore_images
  return restore


@METHODS.register("srn")
def _srn(spec: ml_collections.ConfigDict) -> RestoreFn:
  """`regions='faces'`: each detected face restored in place (photos); default: the whole image."""
  if not spec.workdir:
    raise ConfigError(f"methods.{spec.get('name', 'srn')}.workdir is empty: name a stage-2 "
                      "workdir or release (--config.methods.<name>.kind= leaves the method out)")
  restorer = Restorer(spec.workdir, stage="srn")
  regions = spec.get("regions", "whole") or "whole"
  if regions == "whole":
    return restorer
  if regions != "faces":
    raise ConfigError(f"methods.*.regions={regions!r} is not one of whole, faces")
  face_restorer = FaceRestorer(restorer)

  def restore(image: np.ndarray) -> np.ndarray:
    return face_restorer(image).image

  restore.fingerprint = restorer.fingerprint
  return restore


@METHODS.register("cyclegan")
def _cyclegan(spec: ml_collections.ConfigDict) -> RestoreFn:
  """Zhu et al.'s row: the CycleGAN's blurred -> sharp generator used directly."""
  return Restorer(spec.workdir, stage="cyclegan")


@METHODS.register("folder")
def _folder(spec: ml_collections.ConfigDict) -> method_outputs.OutputFolder:
  """Another codebase's outputs in `path`, matched by name to the test images."""
  return method_outputs.OutputFolder(spec.get("path", ""), method=spec.name)


def method_specs(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
  """`methods` without those whose kind is '' (a config's slot emptied from the command
  line), plus one `folder` method per `output_folders` entry ('name=folder,name=folder')."""
  specs = {name: spec for name, spec in config.methods.items() if spec.kind}
  for entry in filter(None, (part.strip() for part in
                             str(config.get("output_folders", "") or "").split(","))):
    name, separator, folder = entry.partition("=")
    name = name.strip()
    if not separator or not name or not folder.strip():
      raise ConfigError(f"evaluate.output_folders entry {entry!r} is not name=folder")
    if name in specs or name == "blurred":
      raise ConfigError(f"evaluate.output_folders names {name!r}, already a method")
    specs[name] = ml_collections.ConfigDict(dict(kind="folder", path=folder.strip(), label=name,
                                                 workdir="", stage="", regions="whole"))
  return specs


def build_methods(specs: dict[str, ml_collections.ConfigDict] | ml_collections.ConfigDict,
                  ) -> list[Method]:
  """A restore function that has `restore_images` (a `Restorer`) restores in batches. Each
  kind's function gets the method's spec with its `name` added."""
  methods = []
  for name, spec in specs.items():
    made = METHODS.get(spec.kind, key=name)(
        ml_collections.ConfigDict(spec.to_dict() | {"name": name}))
    if isinstance(made, method_outputs.OutputFolder):
      methods.append(Method(name=name, label=spec.label or name, restore=None, outputs=made,
                            fingerprint=made.fingerprint))
      continue
    methods.append(Method(name=name, label=spec.label or name, restore=made,
                          restore_batch=getattr(made, "restore_images", None),
                          fingerprint=getattr(made, "fingerprint", ""),
                          aligned=spec.kind != "identity"))
  return methods


def prepare_image(image: np.ndarray, size: int) -> np.ndarray:
  """A record's image as the methods take it: float RGB, and with `size` > 0 its centre
  square resized to `size`."""
  if size > 0:
    image = augment.resize(augment.center_crop(image, min(image.shape[:2])), size)
  return as_rgb(image)


def _load(source, key_images: tuple[str, ...], size: int, limit: int,
          where: str) -> tuple[dict[str, list], list[str]]:
  """The first `limit` records, prepared; an unreadable one is skipped with one warning."""
  count = len(source) if limit <= 0 else min(limit, len(source))
  loaded = {key: [] for key in key_images} | {"name": []}
  skipped = []
  for index in range(count):
    try:
      record = source[index]
      images = [prepare_image(record[key], size) for key in key_images]
    except ImageReadError as error:
      warn(f"{where}: skipped {error}")
      skipped.append(str(error))
      continue
    for key, image in zip(key_images, images, strict=True):
      loaded[key].append(image)
    loaded["name"].append(str(record.get("name", index)))
  if count and not loaded["name"]:
    raise DataError(f"{where}: none of its {count} test images could be read (see warnings)")
  return loaded, skipped


class _ResumeCache:
  """Restored images of one test set and method, kept so an interrupted evaluation resumes.

  The file holds a fingerprint of everything that decides the images (the test set, the
  method's spec and weights, the image size and count); a file with another fingerprint is
  ignored, so a method retrained in the same folder is restored anew.
  """

  def __init__(self, folder: pathlib.Path, set_name: str, method: str, fingerprint: dict):
    self.path = folder / f"{set_name}.{method}.npz"
    self.fingerprint = hashlib.sha256(
        json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()

  def read(self) -> dict[str, np.ndarray]:
    try:
      with np.load(self.path, allow_pickle=False) as stored:
        if str(stored["fingerprint"]) != self.fingerprint:
          return {}
        return {str(name): stored[f"image{i}"] for i, name in enumerate(stored["names"])}
    except (OSError, KeyError, ValueError):  # absent, or cut short by a kill: start over
      return {}

  def write(self, restored: dict[str, np.ndarray]) -> None:
    self.path.parent.mkdir(parents=True, exist_ok=True)
    partial = self.path.with_suffix(".partial.npz")
    np.savez(partial, fingerprint=np.asarray(self.fingerprint),
             names=np.asarray(list(restored), dtype=str),
             **{f"image{i}": image for i, image in enumerate(restored.values())})
    partial.replace(self.path)


def _restore_all(method: Method, images: list[np.ndarray], names: list[str],
                 cache: _ResumeCache, interruption: Interruption, where: str) -> list[np.ndarray]:
  """`method` over every image, `method.batch_size` at a time, reusing the images an
  interrupted run restored."""
  done = cache.read()
  todo = [index for index, name in enumerate(names) if name not in done]
  computed = False
  try:
    with tqdm(total=len(images), initial=len(images) - len(todo), desc=where,
              unit="image") as progress:
      for chunk in _same_size_chunks(images, todo, method.batch_size):
        if interruption.requested:
          raise interruption.error(
              f"evaluation interrupted at {where} ({len(done)} of {len(images)} images "
              f"restored); the restored images are kept in {cache.path.parent}; run the same "
              "command to resume")
        outputs = method.restore_all([images[index] for index in chunk])
        done.update((names[index], output) for index, output in zip(chunk, outputs,
                                                                     strict=True))
        computed = True
        progress.update(len(chunk))
  finally:
    if computed:
      cache.write(done)
  return [done[name] for name in names]


def _same_size_chunks(images: list[np.ndarray], indices: list[int],
                      size: int) -> list[list[int]]:
  """`indices` in chunks of up to `size` images of one shape (batches take one size), each
  shape's images in order. A shape's chunks are of nearly equal length (100 images: 15 and
  14, not 16 and 4), so that batches padded to a power of two compile one shape."""
  by_shape: dict[tuple, list[int]] = {}
  for index in indices:
    by_shape.setdefault(images[index].shape, []).append(index)
  chunks = []
  for group in by_shape.values():
    count = -(-len(group) // size)
    bounds = [len(group) * part // count for part in range(count + 1)]
    chunks += [group[low:high] for low, high in zip(bounds, bounds[1:], strict=False)]
  return chunks


def _check(interruption: Interruption, where: str, resume: pathlib.Path) -> None:
  if interruption.requested:
    raise interruption.error(f"evaluation interrupted at {where}; the restored images so far "
                             f"are kept in {resume}; run the same command to resume")


def detect_faces(detector: detectors.FaceDetector, images: list[np.ndarray],
                 padding: float) -> tuple[list[bool], list[list[detectors.Box]]]:
  """Whether a face was found in each image, and its boxes in the image's own coordinates.

  Face crops are padded by `padding` of their side (edge pixels) first: detectors are trained
  on faces with context around them and miss a face that fills the whole frame. Same-size
  images go through `detect_batch` together (MTCNN's batch path finds the same boxes).
  """
  found: list[bool] = [False] * len(images)
  boxes: list = [[] for _ in images]
  for chunk in _same_size_chunks(images, list(range(len(images))), DETECT_BATCH):
    pad = int(round(padding * max(images[chunk[0]].shape[:2])))
    padded = [np.pad(np.clip(images[index], 0, 1), ((pad, pad), (pad, pad), (0, 0)),
                     mode="edge") for index in chunk]
    for index, detections in zip(chunk, detector.detect_batch(padded), strict=True):
      found[index] = detectors.face_found(detections)
      boxes[index] = [tuple(v - pad for v in d.box) for d in detections]
  return found, boxes


def evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
  started = time.perf_counter()
  unknown = sorted(set(config.identity_test_sets) - set(config.test_sets))
  if unknown:
    raise ConfigError(f"evaluate.identity_test_sets names {', '.join(unknown)}, not among "
                             f"test_sets ({', '.join(config.test_sets)})")
  specs = method_specs(config)
  scorer = protocols.make_scorer(config.get("protocol", "faceblur"),
                                 crop_border=config.get("crop_border", 0),
                                 y_channel=config.y_channel, ssim=config.get("ssim", ""))
  # `blurred` is a column whether or not it is configured as a method (the pipeline does).
  column_names = ["blurred", *(name for name in specs if name != "blurred")]
  pairs = comparisons.parse(config.get("comparisons", ()), column_names)
  output = pathlib.Path(config.output) if config.output else pathlib.Path(workdir)
  output.mkdir(parents=True, exist_ok=True)
  detector = detectors.make_detector(config.detector, threshold=config.detector_threshold)
  second_detector = detectors.make_detector(
      config.second_detector, threshold=config.second_detector_threshold) \
      if config.second_detector else None
  descriptor = identity.FaceDescriptor() if config.identity else None
  methods = build_methods(specs)
  report: dict = {"test_sets": {}, "real_blurred": None, "blur_realism": None,
                  "protocol": {"name": scorer.protocol.name, "header": scorer.describe(),
                               "description": scorer.protocol.description},
                  "detector": detector.describe(), "detector_name": detector.name,
                  "methods": {m.name: m.label for m in methods},
                  "second_detector": second_detector and {
                      "name": second_detector.name, "description": second_detector.describe()},
                  "identity": identity.report_header(descriptor) if descriptor else None,
                  "intervals": {"method": "paired percentile bootstrap over the faces",
                                "num_resamples": intervals.NUM_RESAMPLES,
                                "confidence": intervals.CONFIDENCE},
                  "skipped": [], "missing_outputs": [], "unaligned": []}
  resume = output / "resume"
  save_restored = bool(config.get("save_restored", False))

  def cache(set_name: str, spec: ml_collections.ConfigDict, method: Method) -> _ResumeCache:
    return _ResumeCache(resume, set_name, method.name, {
        "set": spec.to_dict(), "method": specs[method.name].to_dict(),
        "weights": method.fingerprint, "image_size": config.image_size,
        "max_images": config.max_images})

  def restore(set_name: str, spec: ml_collections.ConfigDict, method: Method,
              images: list[np.ndarray], names: list[str]) -> list[np.ndarray]:
    """`method`'s images for a test set: restored (resumably), or read from its folder with
    each missing output counted; written out with `save_restored`."""
    if method.outputs is not None:
      outputs, problems = method.outputs.read(set_name, names, images)
      report["missing_outputs"] += [f"methods.{method.name}: {problem}" for problem in problems]
      missing[set_name][method.name] = len(problems)
      return outputs
    outputs = _restore_all(method, images, names, cache(set_name, spec, method), interruption,
                           where=f"{set_name}/{method.name}")
    if save_restored:
      method_outputs.save_restored(output, method.name, set_name, names, outputs)
    return outputs

  def quality(set_name: str, method: Method | None, images, sharp, names) -> tuple:
    psnr, ssim, unaligned = scorer.score(images, sharp,
                                         aligned=method is not None and method.aligned)
    for index in unaligned:
      line = f"{set_name}/{names[index]} ({method.name}): ECC alignment failed; scored unaligned"
      warn(line)
      report["unaligned"].append(line)
    return psnr, ssim

  missing: dict[str, dict[str, int]] = {}

  with contextlib.ExitStack() as workers, interruptible() as interruption:
    processes: identity.DescriptorProcesses | None = None
    synthetic_blur = {}  # each paired set's blurred images, for the blur-realism score
    for set_name, spec in config.test_sets.items():
      source = factory.make_paired_source(spec)
      data, skipped = _load(source, ("blurred", "sharp"), config.image_size, config.max_images,
                            where=f"test_sets.{set_name}")
      report["skipped"] += skipped
      synthetic_blur[set_name] = data["blurred"]
      missing[set_name] = {}
      restored = {method.name: restore(set_name, spec, method, data["blurred"], data["name"])
                  for method in methods}
      scores = {}
      for method in methods:
        psnr, ssim = quality(set_name, method, restored[method.name], data["sharp"],
                             data["name"])
        scores[method.name] = {"psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim)),
                               "per_image": (psnr, ssim)}
      padding = config.detector_padding
      found_truth, boxes_truth = detect_faces(detector, data["sharp"], padding)
      found_blurred, boxes_blurred = detect_faces(detector, data["blurred"], padding)
      found = {}
      boxes = {}
      for method in methods:
        _check(interruption, f"{set_name}/detection", resume)
        # The blurred row's outputs are the blurred inputs, detected just above.
        found[method.name], boxes[method.name] = (
            (found_blurred, boxes_blurred) if method.name == "blurred"
            else detect_faces(detector, restored[method.name], padding))
      protocol = detection_protocol.rates(
          {"ground_truth": boxes_truth, "blurred": boxes_blurred, **boxes})
      columns = {"blurred": data["blurred"]} | {m.name: restored[m.name] for m in methods
                                                if m.name != "blurred"}
      extra_cells = detection_protocol.csv_cells(protocol, any_face=False)
      second = None
      if second_detector is not None:
        _check(interruption, f"{set_name}/second detector", resume)
        second = detection_protocol.rates(
            {"ground_truth": detect_faces(second_detector, data["sharp"], padding)[1]}
            | {column: detect_faces(second_detector, images, padding)[1]
               for column, images in columns.items()})
        extra_cells = _merge_cells(extra_cells, detection_protocol.csv_cells(
            second, suffix=f"_{second_detector.name}"))
      scored = None
      if descriptor is not None and (not config.identity_test_sets
                                     or set_name in config.identity_test_sets):
        faces = min(len(data["sharp"]), config.identity_max_images or len(data["sharp"]))
        score_set = functools.partial(identity.score_set, descriptor)
        if (config.get("identity_processes", 0) > 1
            and faces * (len(columns) + 1) >= PROCESSES_MIN_DESCRIPTORS):
          if processes is None:
            processes = workers.enter_context(identity.DescriptorProcesses(
                descriptor, config.identity_processes))
          score_set = processes.score_set
        scored = score_set(
            data["sharp"], columns, padding=config.detector_padding,
            fallback_boxes=detection_protocol.reference_boxes(boxes_truth),
            max_images=config.identity_max_images,
            check=lambda column, where=set_name: _check(interruption,
                                                        f"{where}/identity/{column}", resume))
        report["identity"]["test_sets"][set_name] = scored.summary()
        extra_cells = _merge_cells(extra_cells, scored.rows())
      rows = []
      for index, name in enumerate(data["name"]):
        row = {"file": name, "truth_detected": found_truth[index],
               "blurred_detected": found_blurred[index]}
        for method in methods:
          psnr, ssim = scores[method.name]["per_image"]
          row |= {f"{method.name}_psnr": round(float(psnr[index]), 4),
                  f"{method.name}_ssim": round(float(ssim[index]), 5),
                  f"{method.name}_detected": found[method.name][index]}
        rows.append(row | extra_cells[index])
      _write_csv(output / f"per_image_{set_name}.csv", rows)
      blurred_quality = None
      if "blurred" not in scores and pairs:  # not configured as a method: score the input
        blurred_quality = quality(set_name, None, data["blurred"], data["sharp"], data["name"])
      per_face = _per_face_scores(scores, blurred_quality, found_blurred, found, protocol,
                                  second, scored) if pairs else {}
      figure = output / f"figure_{set_name}.png"
      _figure(figure, data, restored, methods, boxes_truth, boxes_blurred, boxes,
              config.num_grid_images)
      report["test_sets"][set_name] = {
          "num_images": len(data["name"]), "num_skipped": len(skipped),
          "missing_outputs": missing[set_name],
          "quality": {name: {k: v for k, v in q.items() if k != "per_image"}
                      for name, q in scores.items()},
          "detection": {"ground_truth": float(np.mean(found_truth)),
                        "blurred": float(np.mean(found_blurred)),
                        **{name: float(np.mean(values)) for name, values in found.items()}},
          "detection_iou": protocol["iou"],
          "second_detector": second and {"detection": second["any_face"],
                                         "detection_iou": second["iou"]},
          "figure": figure.name, "per_image_csv": f"per_image_{set_name}.csv",
          "differences": comparisons.differences(per_face, pairs),
      }
      share = comparisons.oracle_share(per_face, pairs)
      if share is not None:
        report["test_sets"][set_name]["oracle_share"] = share

    if config.real_blurred.kind:
      source = factory.make_source(config.real_blurred)
      data, skipped = _load(source, ("image",), config.image_size, config.max_images,
                            where="real_blurred")
      report["skipped"] += skipped
      found_blurred, _ = detect_faces(detector, data["image"], config.detector_padding)
      detection = {"blurred": float(np.mean(found_blurred))}
      second_real = {"blurred": float(np.mean(detect_faces(
          second_detector, data["image"], config.detector_padding)[0]))} \
          if second_detector else None
      missing["real_blurred"] = {}
      for method in methods:
        if method.name == "blurred":
          continue
        restored_real = restore("real_blurred", config.real_blurred, method, data["image"],
                                data["name"])
        _check(interruption, "real_blurred/detection", resume)
        found_restored, _ = detect_faces(detector, restored_real, config.detector_padding)
        detection[method.name] = float(np.mean(found_restored))
        if second_detector is not None:
          second_real[method.name] = float(np.mean(detect_faces(
              second_detector, restored_real, config.detector_padding)[0]))
      report["real_blurred"] = {"num_images": len(data["image"]),
                                "num_skipped": len(skipped), "detection": detection,
                                "missing_outputs": missing["real_blurred"],
                                "second_detector": second_real and {"detection": second_real}}
      report["blur_realism"] = _realism(data["image"], synthetic_blur)
    _check(interruption, "the end", resume)

  report["wall_time_s"] = round(time.perf_counter() - started, 1)
  report["versions"] = {name: importlib.metadata.version(name)
                        for name in ("faceblur", "jax", "flax", "mtcnn", "dlib-bin",
                                     "face-recognition-models")
                        if _installed(name)}
  write_reports(output, report)
  shutil.rmtree(resume, ignore_errors=True)
  if report["skipped"]:
    raise FaceblurError(
        f"{len(report['skipped'])} test image(s) could not be read and were left out (see "
        f"the warnings); the report in {output} covers the rest")
  if report["missing_outputs"]:
    raise FaceblurError(
        f"{len(report['missing_outputs'])} output(s) of folder methods were missing or "
        f"unreadable; the blurred input stood in for each (listed in {output / 'report.md'})")
  return report


def _installed(name: str) -> bool:
  try:
    importlib.metadata.version(name)
    return True
  except importlib.metadata.PackageNotFoundError:
    return False


def _merge_cells(cells: list[dict], more: list[dict]) -> list[dict]:
  """Per-image CSV cells side by side; `more` may cover only the first images."""
  return [row | (more[index] if index < len(more) else {}) for index, row in enumerate(cells)]


def _per_face_scores(quality, blurred_quality, found_blurred, found, protocol, second,
                     scored) -> dict:
  """Each metric's per-face scores by column, as the per-image CSV holds them: the input of the
  paired differences. A later entry for a column overrides an earlier one, as in the CSV
  (a method named `blurred` over the blurred input's own detection). `blurred_quality`: the
  blurred input's (PSNR, SSIM) where no method is named `blurred`."""
  psnr = {name: q["per_image"][0] for name, q in quality.items()}
  ssim = {name: q["per_image"][1] for name, q in quality.items()}
  if blurred_quality is not None:
    psnr["blurred"], ssim["blurred"] = blurred_quality
  scores = {"psnr": psnr, "ssim": ssim}
  if scored is not None:
    scores["identity_distance"] = scored.distances
  scores["detection"] = {"blurred": found_blurred} | found
  for key, rules in (("", protocol), ("second_detector_", second)):
    if rules is None:
      continue
    columns = {column: per_image for column, per_image in rules["per_image"].items()
               if column != "ground_truth"}
    if key:
      scores[f"{key}detection"] = {column: any_face for column, (any_face, _) in columns.items()}
    scores[f"{key}detection_iou"] = {column: iou for column, (_, iou) in columns.items()}
  return scores


def _realism(real_blurred: list[np.ndarray],
             synthetic_blur: dict[str, list[np.ndarray]]) -> dict:
  """How close each paired test set's synthetic blur is to the real blurred photos."""
  scored = blur_realism.blur_realism(
      _stack_same_size(real_blurred),
      {name: _stack_same_size(images) for name, images in synthetic_blur.items()})
  return {name: dataclasses.asdict(result) for name, result in scored.items()}


def _stack_same_size(images: list[np.ndarray]) -> list[np.ndarray] | np.ndarray:
  shapes = {image.shape for image in images}
  return np.stack(images) if len(shapes) == 1 else images


def _write_csv(path: pathlib.Path, rows: list[dict]) -> None:
  if not rows:
    return
  with open(path, "w", newline="") as handle:
    writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def _figure(path, data, restored, methods, boxes_truth, boxes_blurred, boxes, count) -> None:
  count = min(count, len(data["name"]))
  shown = [m for m in methods if m.name != "blurred"]
  rows, row_boxes = [], []
  for index in range(count):
    rows.append([data["sharp"][index], data["blurred"][index]]
                + [restored[m.name][index] for m in shown])
    row_boxes.append([boxes_truth[index], boxes_blurred[index]]
                     + [boxes[m.name][index] for m in shown])
  if not rows:
    return
  # Short method names as titles (the report's tables give the full labels); small faces
  # are enlarged so boxes and titles stay readable.
  save_grid(path, rows, boxes=row_boxes, cell_size=max(128, max(rows[0][0].shape[:2])),
            column_titles=["ground truth", "blurred"] + [m.name for m in shown])
