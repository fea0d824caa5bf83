"""Pairs/s of the synthesis job: the CycleGAN sharp -> blurred generator over a face folder.

  python bench/synthesis.py                                    # 256 px, ResNet-9, 64 faces
  python bench/synthesis.py --size=64 --count=32 --features=16 --num_blocks=4  # quick look

Runs `faceblur.train.synthesize.synthesize` itself, on a folder of sharp face JPEGs (the demo's
real faces) with a step-0 checkpoint of a RANDOMLY INITIALISED reference CycleGAN (speed does
not depend on the weights). Two cases: `write` is the job as it is; `no_write` replaces its
PNG writer by a no-op, which isolates encoding and file IO. Timers wrapped around the job's
own pieces split the time into checkpoint loading, compilation, decoding the sources,
preparing them (crop, resize), the generator and writing; pairs/s leaves out loading and
compilation (`end_to_end` keeps them). The job writes from `--write_workers` threads while
the generator runs, so `write_s` is summed over those threads and overlaps the rest.
"""

import pathlib
import sys
import tempfile
import threading
import time
import types
from unittest import mock

import jax
from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
  machine,
  print_json,
  print_table,
  quiet_logs,
  save_random_checkpoint,
)
from configs import cyclegan as cyclegan_config  # noqa: E402
from configs import synthesize as synthesize_config  # noqa: E402
from faceblur.data import demo, factory, image_io  # noqa: E402
from faceblur.ops import compilation  # noqa: E402
from faceblur.train import cyclegan  # noqa: E402
from faceblur.train import synthesize as synthesize_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("size", synthesize_config.get_config().image_size,
                     "Synthesised image size (config.image_size).")
flags.DEFINE_integer("count", 64, "Sharp faces in the folder (pairs written).")
flags.DEFINE_integer("source_size", 0, "Side of the sharp face files; 0 = --size.")
flags.DEFINE_integer("batch_size", synthesize_config.get_config().batch_size,
                     "Generator batch (config.batch_size).")
flags.DEFINE_integer("features", cyclegan_config.get_config().model.features,
                     "Generator width (64 = the reference).")
flags.DEFINE_integer("num_blocks", cyclegan_config.get_config().model.num_blocks,
                     "Generator residual blocks (9 = the reference at 256 px).")
flags.DEFINE_integer("write_workers", synthesize_config.get_config().write_workers,
                     "Threads writing PNGs (config.write_workers).")
flags.DEFINE_list("cases", ["write", "no_write"], "write: the job as is; no_write: PNG "
                  "writing replaced by a no-op.")


class Timer:
  """Accumulated wall time of the calls of the functions it wraps, by name."""

  def __init__(self):
    self.seconds: dict[str, float] = {}
    self._lock = threading.Lock()  # the writer threads add up their times concurrently

  def wrap(self, name: str, fn):
    def timed(*args, **kwargs):
      start = time.perf_counter()
      try:
        return fn(*args, **kwargs)
      finally:
        with self._lock:
          self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
    return timed

  def jit(self, fn, **kwargs):
    """`compilation.jit` that times compilation apart from the (blocking) calls."""
    jitted, compiled = compilation.jit(fn, **kwargs), []

    def call(*args):
      if not compiled:
        start = time.perf_counter()
        compiled.append(jitted.lower(*args).compile())
        self.seconds["compile"] = time.perf_counter() - start
      start = time.perf_counter()
      result = jax.block_until_ready(compiled[0](*args))
      self.seconds["generator"] = self.seconds.get("generator", 0.0) + time.perf_counter() - start
      return result
    return call


class TimedSource:
  """A source whose reads (file decoding) are timed."""

  def __init__(self, source, timer: Timer):
    self.source, self._getitem = source, timer.wrap("decode", source.__getitem__)

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int):
    return self._getitem(index)


def run_case(case: str, config, workdir: pathlib.Path) -> dict:
  """The synthesis job once, into a fresh output folder, with its pieces timed."""
  config = config.copy_and_resolve_references()
  config.output = str(workdir / f"pairs_{case}")
  pathlib.Path(config.output).mkdir()  # no_write creates no folder for the summary file
  timer = Timer()
  compilation_proxy = types.SimpleNamespace(jit=timer.jit)
  factory_proxy = types.SimpleNamespace(
      make_source=lambda spec: TimedSource(factory.make_source(spec), timer))
  writer = (lambda path, image: None) if case == "no_write" else synthesize_lib.save_image
  with mock.patch.multiple(
      synthesize_lib, compilation=compilation_proxy, factory=factory_proxy,
      load_trained=timer.wrap("load", synthesize_lib.load_trained),
      prepare_sharp=timer.wrap("prepare", synthesize_lib.prepare_sharp),
      save_image=timer.wrap("write", writer)):
    start = time.perf_counter()
    synthesize_lib.synthesize(config, workdir)
    total_s = time.perf_counter() - start
  seconds = timer.seconds
  steady_s = total_s - seconds["load"] - seconds["compile"]
  parts = ("decode", "prepare", "generator", "write")
  split = {f"{part}_s": round(seconds.get(part, 0.0), 3) for part in parts}
  # Writing runs in threads beside the rest: "other" is the main thread's remaining time (waiting
  # for the last writes among it).
  split["other_s"] = round(steady_s - sum(seconds.get(part, 0.0) for part in parts[:3]), 3)
  return {"case": case, "size": config.image_size, "pairs": FLAGS.count,
          "batch": config.batch_size, "pairs_per_s": round(FLAGS.count / steady_s, 3),
          "end_to_end_pairs_per_s": round(FLAGS.count / total_s, 3),
          "generator_pairs_per_s": round(FLAGS.count / seconds["generator"], 3),
          "total_s": round(total_s, 2), "load_s": round(seconds["load"], 2),
          "compile_s": round(seconds["compile"], 2), **split}


def main(argv):
  del argv
  quiet_logs()
  print_json({"machine": machine()})
  stage1 = cyclegan_config.get_config()
  stage1.model.features, stage1.model.num_blocks = FLAGS.features, FLAGS.num_blocks
  stage1.data.crop_size = FLAGS.size  # only sizes the (unused) image pools of the checkpoint
  print_json({"model": f"ResnetGenerator features={FLAGS.features} num_blocks="
                       f"{FLAGS.num_blocks}",
              "weights": "random init (step-0 checkpoint), not trained"})
  rows = []
  with tempfile.TemporaryDirectory(prefix="faceblur_bench_synthesis_") as tmp:
    workdir = pathlib.Path(tmp)
    save_random_checkpoint(cyclegan, stage1, workdir / "cyclegan")
    faces = demo.demo_faces(size=FLAGS.source_size or FLAGS.size, count=FLAGS.count, seed=2)
    for index, face in enumerate(faces):
      image_io.save_image(workdir / "sharp" / f"{index:05d}.jpg", face)
    config = synthesize_config.get_config()
    config.cyclegan_workdir = str(workdir / "cyclegan")
    config.source.path = str(workdir / "sharp")
    config.image_size, config.batch_size = FLAGS.size, FLAGS.batch_size
    config.write_workers = FLAGS.write_workers
    for case in FLAGS.cases:
      rows.append(run_case(case, config, workdir))
      print_json(rows[-1])
  print_table(rows, {"case": "case", "size": "size", "pairs": "pairs", "batch": "batch",
                     "pairs_per_s": "pairs/s", "end_to_end_pairs_per_s": "end-to-end pairs/s",
                     "generator_pairs_per_s": "generator pairs/s", "load_s": "load s",
                     "compile_s": "compile s", "decode_s": "decode s", "prepare_s": "prepare s",
                     "generator_s": "generator s", "write_s": "write s", "other_s": "other s"})


if __name__ == "__main__":
  app.run(main)
