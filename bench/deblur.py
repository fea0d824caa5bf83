"""Latency and peak host memory of deblurring one photo with SRN, as the deblur job does it.

  python bench/deblur.py                                    # 256x256, 1280x720, 12 MP
  python bench/deblur.py --sizes=256x256,640x480 --repeats=2  # quick look
  python bench/deblur.py --sizes= --faces=4000x3000:10       # faces in place only
  python bench/deblur.py --frameworks=faceblur               # without torch installed

The reference-width SRN of configs/srn.py with RANDOMLY INITIALISED weights (a step-0
checkpoint; speed and memory do not depend on the weights) goes through the deblur job's
code path: `faceblur.inference.Deblurrer` with the tile size and overlap of
configs/deblur.py, a JPEG read with `load_image` and written with `save_image`. Batch 1.

Each size runs in a fresh process (the script re-runs itself with --case), so the peak RSS
reported is that case's alone. Compile time (JAX's own compile events, on the first tile)
is reported apart from the steady-state latency (median of --repeats whole-image calls).
Issue 5's target: a 12 MP photo in under 4 GiB of host memory.

Faces in place (`--faces`, WIDTHxHEIGHT:N, issue 15): the deblur job's path for a face model
(`faceblur.inference.faces.FaceRestorer`) on a photo with N held-out demo faces of
--face_side px pasted in a grid over the astronaut (whose own face MTCNN finds too: N + 1),
MTCNN on the downscaled copy, then each face restored at --face_size px across (a random-init
checkpoint records no face scale; 136 is what the pipeline's reference SRN reads from its
synthesis.json: 256 px CelebA crops x face fill 0.53). Its latency includes detection; issue
15's target: 12 MP with up to 10 faces in under 15 s.

PyTorch side by side (`--frameworks`): `bench/torch_reference.py`'s SRN with random weights,
one forward pass of the whole image (edge-padded to a multiple of 16, as that port needs) in
`torch.inference_mode`, from the decoded HxWx3 array to the restored one, in both memory
layouts (NCHW and channels_last), each size and layout in its own process. The ratio is
faceblur's speed over the faster layout's (issue 17). `--torch_device=cuda` for a GPU.
"""

import pathlib
import sys
import tempfile
import time

import numpy as np
from absl import app, flags
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
  TORCH_LAYOUTS,
  CompileTime,
  faster_torch,
  machine,
  peak_rss_mib,
  print_json,
  print_table,
  quiet_logs,
  run_isolated,
  save_random_checkpoint,
  time_calls,
  torch_memory_format,
  torch_to_layout,
)
from configs import deblur as deblur_config  # noqa: E402
from configs import srn as srn_config  # noqa: E402
from faceblur import inference  # noqa: E402
from faceblur.data import image_io  # noqa: E402
from faceblur.data.demo import demo_faces  # noqa: E402
from faceblur.inference.faces import FaceRestorer  # noqa: E402
from faceblur.train import srn  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["256x256", "1280x720", "4000x3000"], "Image sizes, WIDTHxHEIGHT.")
flags.DEFINE_integer("repeats", 5, "Timed whole-image calls per size (the median is reported).")
flags.DEFINE_float("budget_s", 600.0, "Stop repeating a size once its timed calls took this "
                   "long (at least one runs).")
flags.DEFINE_integer("tile_size", deblur_config.get_config().tile_size,
                     "Deblurrer tile size (0: tiles from --tile_megapixels).")
flags.DEFINE_float("tile_megapixels", deblur_config.get_config().tile_megapixels,
                   "Deblurrer tile budget (megapixels).")
flags.DEFINE_integer("tile_overlap", deblur_config.get_config().tile_overlap, "Tile overlap.")
flags.DEFINE_integer("features", srn_config.get_config().model.features,
                     "SRN first-stage width (32 = the reference).")
flags.DEFINE_list("frameworks", ["faceblur", "pytorch"], "faceblur and/or pytorch.")
flags.DEFINE_list("torch_layouts", list(TORCH_LAYOUTS), "PyTorch memory layouts to time.")
flags.DEFINE_string("torch_device", "cpu", "PyTorch's device: cpu or cuda.")
flags.DEFINE_list("faces", ["4000x3000:10"], "Faces-in-place cases, WIDTHxHEIGHT:FACES.")
flags.DEFINE_integer("face_side", 360, "Side (px) of each demo face pasted for --faces.")
flags.DEFINE_integer("face_size", 136, "FaceRestorer face_size for --faces (px across a face "
                     "at the network's scale).")
flags.DEFINE_string("faces_case", "", "Internal: run one --faces case in this process.")
flags.DEFINE_string("case", "", "Internal: run one size in this process.")
flags.DEFINE_string("layout", "", "Internal: --case runs PyTorch in this layout.")
flags.DEFINE_string("workdir", "", "Internal: the checkpoint and inputs of --case.")

GIB = 1024.0


def _parse_size(size: str) -> tuple[int, int]:
  width, height = (int(side) for side in size.lower().split("x"))
  return width, height


def _input_path(workdir: pathlib.Path, width: int, height: int) -> pathlib.Path:
  return workdir / f"input_{width}x{height}.jpg"


def _write_inputs(workdir: pathlib.Path, sizes: list[tuple[int, int]]) -> None:
  """Photo-like JPEGs (the astronaut portrait, stretched): what the deblur job reads."""
  import skimage.data  # noqa: PLC0415

  portrait = Image.fromarray(skimage.data.astronaut())
  for width, height in sizes:
    image_io.save_image(_input_path(workdir, width, height),
                        np.asarray(portrait.resize((width, height), Image.BICUBIC)))


def run_case(size: str, workdir: pathlib.Path) -> dict:
  """One size, in this (fresh) process: load, compile, one job-like pass, timed repeats."""
  width, height = _parse_size(size)
  start = time.perf_counter()
  deblurrer = inference.Deblurrer(workdir, tile_size=FLAGS.tile_size,
                                  tile_megapixels=FLAGS.tile_megapixels,
                                  tile_overlap=FLAGS.tile_overlap)
  load_s = time.perf_counter() - start

  tile = np.zeros((1, *deblurrer.tile_shape(height, width), 3), np.float32)
  compile_time = CompileTime()
  deblurrer.restore_batch(tile)  # compiles for this image's tile shape
  compile_time.close()
  tile_timing = time_calls(lambda: deblurrer.restore_batch(tile), warmup=0, repeats=3)
  setup_rss = peak_rss_mib()

  calls = []
  restore_batch = deblurrer.restore_batch
  deblurrer.restore_batch = lambda batch: calls.append(batch.shape) or restore_batch(batch)
  start = time.perf_counter()  # the job's loop body, once: read, restore, write
  image = image_io.load_image(_input_path(workdir, width, height))
  read_s = time.perf_counter() - start
  restored = deblurrer(image)
  start = time.perf_counter()
  image_io.save_image(workdir / f"output_{width}x{height}.jpg", restored)
  write_s = time.perf_counter() - start
  del restored
  num_tiles = len(calls)
  deblurrer.restore_batch = restore_batch

  timing = time_calls(lambda: deblurrer(image), warmup=0, repeats=FLAGS.repeats,
                      budget_s=FLAGS.budget_s)
  peak = peak_rss_mib()
  return {"size": f"{width}x{height}", "megapixels": round(width * height / 1e6, 2),
          "tiles": num_tiles, "tile": f"{tile.shape[2]}x{tile.shape[1]}",
          "compile_s": round(compile_time.seconds, 2),
          "tile_s": round(tile_timing["median_s"], 3),
          "latency_s": round(timing["median_s"], 3), "min_s": round(timing["min_s"], 3),
          "max_s": round(timing["max_s"], 3), "repeats": timing["repeats"],
          "megapixels_per_s": round(width * height / 1e6 / timing["median_s"], 3),
          "checkpoint_load_s": round(load_s, 2), "jpeg_read_s": round(read_s, 3),
          "jpeg_write_s": round(write_s, 3), "setup_rss_mib": round(setup_rss),
          "peak_rss_mib": round(peak), "peak_rss_gib": round(peak / GIB, 2)}


TORCH_MULTIPLE = 16  # the PyTorch port's sides: 3 scales of ratio 0.5, then two stride-2 stages


def run_torch_case(size: str, layout: str, workdir: pathlib.Path) -> dict:
  """One size in one PyTorch layout, in this (fresh) process: a forward of the whole image."""
  import torch  # noqa: PLC0415
  import torch.nn.functional as F  # noqa: PLC0415, N812

  from bench import torch_reference  # noqa: PLC0415

  width, height = _parse_size(size)
  device, memory_format = FLAGS.torch_device, torch_memory_format(layout)
  if device == "cuda":
    torch.backends.cudnn.benchmark = True
  torch.manual_seed(0)
  network = torch_reference.SRNDeblurNet(FLAGS.features).eval()
  torch_to_layout([network], layout, device)
  image = image_io.load_image(_input_path(workdir, width, height))

  def restore(image: np.ndarray) -> np.ndarray:
    """Decoded uint8 HxWx3 in, float32 HxWx3 in [0, 1] out, as the Deblurrer."""
    blurred = torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float() / 255
    padding = (0, -width % TORCH_MULTIPLE, 0, -height % TORCH_MULTIPLE)
    blurred = F.pad(blurred, padding, mode="replicate").contiguous(memory_format=memory_format)
    with torch.inference_mode():
      restored = network(blurred)[-1][..., :height, :width].clamp(0, 1)
    return restored[0].permute(1, 2, 0).float().cpu().numpy()

  start = time.perf_counter()
  restore(image)  # the first call: allocation (and cuDNN's algorithm search on a GPU)
  first_s = time.perf_counter() - start
  timing = time_calls(lambda: restore(image), warmup=0, repeats=FLAGS.repeats,
                      budget_s=FLAGS.budget_s)
  peak = peak_rss_mib()
  return {"size": f"{width}x{height}", "megapixels": round(width * height / 1e6, 2),
          "framework": "pytorch", "layout": layout, "device": device,
          "threads": torch.get_num_threads(), "tiles": 1, "first_call_s": round(first_s, 2),
          "latency_s": round(timing["median_s"], 3), "min_s": round(timing["min_s"], 3),
          "max_s": round(timing["max_s"], 3), "repeats": timing["repeats"],
          "megapixels_per_s": round(width * height / 1e6 / timing["median_s"], 3),
          "peak_rss_mib": round(peak), "peak_rss_gib": round(peak / GIB, 2)}


def add_ratios(rows: list[dict]) -> None:
  """Each faceblur row's speed over the faster PyTorch layout's at its size, in place."""
  fastest = faster_torch(rows, lambda row: row["size"], "latency_s")
  for row in rows:
    reference = fastest.get(row["size"])
    if row["framework"] == "faceblur" and reference:
      row["vs_pytorch"] = (f"**{reference['latency_s'] / row['latency_s']:.2f}** "
                           f"(vs {reference['layout']})")


def _faces_input(workdir: pathlib.Path, case: str) -> tuple[pathlib.Path, int, int, int]:
  """(path, width, height, faces) of a --faces case; writes the photo if it is not there."""
  dims, _, count = case.partition(":")
  width, height = (int(side) for side in dims.lower().split("x"))
  count, side = int(count or 10), FLAGS.face_side
  path = workdir / f"faces_{width}x{height}_{count}.jpg"
  if not path.exists():
    import skimage.data  # noqa: PLC0415

    photo = np.array(Image.fromarray(skimage.data.astronaut()).resize((width, height),
                                                                      Image.BICUBIC))
    columns = max(1, width // (2 * side))
    for index, face in enumerate(demo_faces(size=side, count=count, seed=7, group="test")):
      top = side // 2 + (index // columns) * 2 * side
      left = side // 2 + (index % columns) * 2 * side
      if top + side > height:
        raise ValueError(f"{count} faces of {side} px do not fit in {width}x{height}")
      photo[top:top + side, left:left + side] = face
    image_io.save_image(path, photo)
  return path, width, height, count


def run_faces_case(case: str, workdir: pathlib.Path) -> dict:
  """One --faces case in this (fresh) process: compile, then timed whole passes (detection,
  restoring and pasting every face) on the decoded photo."""
  path, width, height, count = _faces_input(workdir, case)
  start = time.perf_counter()
  face_restorer = FaceRestorer(inference.Deblurrer(workdir), face_size=FLAGS.face_size)
  load_s = time.perf_counter() - start
  image = image_io.load_image(path)
  compile_time = CompileTime()
  result = face_restorer(image)  # compiles MTCNN's pyramid levels and the SRN at one side
  compile_time.close()
  detect = time_calls(lambda: face_restorer.detect(image), warmup=0, repeats=FLAGS.repeats,
                      budget_s=FLAGS.budget_s)
  timing = time_calls(lambda: face_restorer(image), warmup=0, repeats=FLAGS.repeats,
                      budget_s=FLAGS.budget_s)
  peak = peak_rss_mib()
  return {"size": f"{width}x{height}, {count} faces", "framework": "faceblur",
          "megapixels": round(width * height / 1e6, 2),
          "faces_found": sum(face.action == "restored" for face in result.faces),
          "tiles": f"{len(result.faces)} faces", "tile": f"{face_restorer.network_side} px",
          "compile_s": round(compile_time.seconds, 2), "detect_s": round(detect["median_s"], 3),
          "latency_s": round(timing["median_s"], 3), "min_s": round(timing["min_s"], 3),
          "max_s": round(timing["max_s"], 3), "repeats": timing["repeats"],
          "megapixels_per_s": round(width * height / 1e6 / timing["median_s"], 3),
          "checkpoint_load_s": round(load_s, 2), "peak_rss_mib": round(peak),
          "peak_rss_gib": round(peak / GIB, 2)}


def main(argv):
  del argv
  quiet_logs()
  if FLAGS.faces_case:
    print_json(run_faces_case(FLAGS.faces_case, pathlib.Path(FLAGS.workdir)))
    return
  if FLAGS.case:
    workdir = pathlib.Path(FLAGS.workdir)
    if FLAGS.layout:
      print_json(run_torch_case(FLAGS.case, FLAGS.layout, workdir))
    else:
      print_json({"framework": "faceblur", **run_case(FLAGS.case, workdir)})
    return
  unknown = sorted(set(FLAGS.torch_layouts) - set(TORCH_LAYOUTS))
  if unknown:
    sys.exit(f"--torch_layouts: unknown {', '.join(unknown)}; choose {', '.join(TORCH_LAYOUTS)}")
  print_json({"machine": machine()})
  config = srn_config.get_config()
  config.model.features = FLAGS.features
  print_json({"model": f"SRN features={config.model.features} num_scales="
                       f"{config.model.num_scales} lstm={config.model.use_lstm}",
              "weights": "random init (step-0 checkpoint), not trained",
              "tile_size": FLAGS.tile_size, "tile_megapixels": FLAGS.tile_megapixels,
              "tile_overlap": FLAGS.tile_overlap})
  rows = []
  with tempfile.TemporaryDirectory(prefix="faceblur_bench_deblur_") as workdir:
    save_random_checkpoint(srn, config, workdir)
    _write_inputs(pathlib.Path(workdir), [_parse_size(size) for size in FLAGS.sizes])
    forwarded = [FLAGS[name].serialize() for name in
                 ("repeats", "budget_s", "tile_size", "tile_megapixels", "tile_overlap",
                  "features", "torch_device")]
    layouts = FLAGS.torch_layouts if "pytorch" in FLAGS.frameworks else []
    for case in FLAGS.faces:
      rows.append(run_isolated(__file__, [f"--faces_case={case}", f"--workdir={workdir}",
                                          *(FLAGS[name].serialize() for name in
                                            ("repeats", "budget_s", "face_side", "face_size"))]))
      print_json(rows[-1])
      if rows[-1]["megapixels"] >= 12:
        verdict = "meets" if rows[-1]["latency_s"] < 15 else "MISSES"
        print(f"\n{rows[-1]['size']} in place: {rows[-1]['latency_s']} s with detection "
              f"({rows[-1]['faces_found']} found): {verdict} the < 15 s target")
    for size in FLAGS.sizes:
      case = [f"--case={size}", f"--workdir={workdir}", *forwarded]
      if "faceblur" in FLAGS.frameworks:
        rows.append(run_isolated(__file__, case))
        print_json(rows[-1])
      for layout in layouts:
        rows.append(run_isolated(__file__, [*case, f"--layout={layout}"]))
        print_json(rows[-1])
  add_ratios(rows)
  for row in rows:
    if row["framework"] == "faceblur" and row["megapixels"] >= 12:
      verdict = "meets" if row["peak_rss_gib"] < 4 else "MISSES"
      print(f"\n12 MP peak host memory {row['peak_rss_gib']} GiB: {verdict} the < 4 GiB target")
  print_table(rows, {"size": "size (WxH)", "framework": "framework", "layout": "layout",
                     "tiles": "tiles", "compile_s": "compile s",
                     "latency_s": "latency s (median)", "repeats": "n",
                     "vs_pytorch": "faceblur / faster PyTorch (speed)",
                     "megapixels_per_s": "MP/s", "jpeg_read_s": "JPEG read s",
                     "jpeg_write_s": "JPEG write s", "setup_rss_mib": "RSS after setup MiB",
                     "peak_rss_mib": "peak RSS MiB"})


if __name__ == "__main__":
  app.run(main)
