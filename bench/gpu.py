"""One GPU run of the benchmarks, sized to end within 10 minutes on one H200 (issue 17).

  python bench/gpu.py --out=$OUT        # on the GPU machine (see bench/RESULTS.md, "GPU")
  python bench/gpu.py --small           # a check of the whole script on a CPU, tiny sizes

Parts, in this order, each case in its own process (this one imports neither JAX nor torch,
so it holds no GPU memory while a case runs):

1. peak: jitted square matrix products, float32 (JAX's default precision) and bfloat16.
2. train: both train steps at the reference shapes of configs/srn.py and configs/cyclegan.py
   (256 px crops, SRN batch 16, CycleGAN batch 4; `bench/train_step.py --case`), in float32
   and bfloat16 (`config.mixed_precision`), with PyTorch CUDA side by side in both layouts
   (NCHW, channels_last; autocast bf16 for the bf16 rows). FLOP/s from the networks' own
   FLOPs (`bench.common.train_step_flops`), MFU against --nominal_tflops (the H200's ~790
   TFLOP/s dense bf16) for every row and, for float32 rows, against the float32 matrix
   product measured in part 1 as well.
3. deblur: latency of the deblur job's path at 720p and 12 MP (`bench/deblur.py`), with
   PyTorch's one whole-image forward in both layouts, and the faces mode at 12 MP (10 faces).
4. pipeline: the input pipeline alone with 16 worker processes (`bench/input_pipeline.py
   --modes=`), in pairs/s, against the pairs/s the float32 and bf16 steps of part 2 consume.

Missing packages are named up front, with the command that fetches them as wheels for the GPU
machine; the parts that need them are skipped, the others run. Each part has a share of
--budget_s and a case that overruns is stopped, so the run ends in time and says what it
skipped. Results go to --out as results.json and results.md (a section to paste into
bench/RESULTS.md), rewritten after every case, so a stopped run still leaves what it measured.
"""

import argparse
import datetime
import importlib.util
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"

# Module -> the pip distribution that provides it, for the message about missing ones.
DISTRIBUTIONS = {"jax": "jax", "flax": "flax", "optax": "optax", "orbax": "orbax-checkpoint",
                 "ml_collections": "ml-collections", "clu": "clu", "grain": "grain",
                 "array_record": "array-record", "portpicker": "portpicker",
                 "etils": "etils", "absl": "absl-py", "numpy": "numpy", "PIL": "pillow",
                 "tensorboardX": "tensorboardX", "skimage": "scikit-image", "scipy": "scipy",
                 "tqdm": "tqdm", "torch": "torch", "yaml": "PyYAML"}
_FACEBLUR = ("jax", "flax", "optax", "orbax", "ml_collections", "clu", "grain", "array_record",
             "portpicker", "absl", "numpy", "PIL", "scipy", "tensorboardX", "yaml")
NEEDS = {  # each part's modules, and the imports that check the rest of what it needs
    "peak": (("jax",), "import jax"),
    "train": (_FACEBLUR, "import configs.srn, configs.cyclegan, faceblur.train.srn, "
              "faceblur.train.cyclegan, faceblur.ops.compilation, bench.common"),
    "torch": (("torch",), "import torch, bench.torch_reference"),
    "deblur": ((*_FACEBLUR, "skimage", "tqdm"), "import configs.deblur, faceblur.inference, "
               "faceblur.data.image_io, skimage.data"),
    "pipeline": (_FACEBLUR, "import faceblur.data.camera_blur, faceblur.data.demo, "
                 "faceblur.train.loop"),
}
# One child tries every part's imports, then names JAX's platform (the GPU check).
_PROBE = """
import json, sys, traceback
errors = {}
for part, code in json.loads(sys.argv[1]).items():
  try:
    exec(code)
  except Exception as error:
    errors[part] = f"{type(error).__name__}: {error}"
platform = None
if "peak" not in errors:
  import jax
  platform = jax.devices()[0].platform
print(json.dumps({"errors": errors, "platform": platform}))
"""
CASE_LIMIT_S = 240.0  # one case's most: a hung case must not take every later one with it
PARTS = ("peak", "train", "deblur", "pipeline")
SHARES = {"peak": 0.05, "train": 0.6, "deblur": 0.2, "pipeline": 0.15}  # of --budget_s

FULL = {"size": 256, "srn_batch": 16, "cyclegan_batch": 4, "warmup": 2, "repeats": 10,
        "deblur_sizes": "1280x720,4000x3000", "deblur_repeats": 3,
        "deblur_faces": "4000x3000:10", "matmul": 8192,
        "num_workers": 16, "num_files": 64, "pipeline_batches": 100}
SMALL = {"size": 32, "srn_batch": 1, "cyclegan_batch": 1, "warmup": 0, "repeats": 1,
         "deblur_sizes": "64x48,96x64", "deblur_repeats": 1, "deblur_faces": "", "matmul": 1024,
         "num_workers": 2, "num_files": 4, "pipeline_batches": 4}


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--small", action="store_true",
                      help="tiny sizes, one repeat, CPU: checks the script, measures nothing")
  parser.add_argument("--out", default="", help="folder for results.json and results.md "
                      "(default: $OUT if set, else a new temporary folder)")
  parser.add_argument("--parts", default=",".join(PARTS), help=f"some of {','.join(PARTS)}")
  parser.add_argument("--budget_s", type=float, default=560.0,
                      help="wall-clock budget of the whole run (parts get shares of it)")
  parser.add_argument("--nominal_tflops", type=float, default=790.0,
                      help="the card's dense bf16 TFLOP/s, for MFU (H200: ~790)")
  parser.add_argument("--torch_device", default="", help="default: cuda, cpu under --small")
  parser.add_argument("--case", default="", help=argparse.SUPPRESS)
  parser.add_argument("--matmul", type=int, default=0, help=argparse.SUPPRESS)
  for name in ("size", "srn_batch", "cyclegan_batch"):
    parser.add_argument(f"--{name}", type=int, default=0, help=argparse.SUPPRESS)
  return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# Children


def peak_case(size: int) -> dict:
  """GFLOP/s of jitted size^2 matrix products in float32 and bfloat16, on JAX's device."""
  sys.path.insert(0, str(ROOT))
  import jax

  from bench.common import matmul_peak_gflops

  device = jax.devices()[0]
  return {"device": f"{device.platform}:{device.device_kind}", "jax": jax.__version__,
          "matmul_size": size,
          "float32_gflops_per_s": round(matmul_peak_gflops(size, "float32", repeats=10), 1),
          "bfloat16_gflops_per_s": round(matmul_peak_gflops(size, "bfloat16", repeats=10), 1),
          "float32_precision": str(jax.config.jax_default_matmul_precision or "default")}


def flops_case(size: int, srn_batch: int, cyclegan_batch: int) -> dict:
  """Network FLOPs of one train step of each stage at the reference configs (shapes only)."""
  sys.path.insert(0, str(ROOT))
  from bench.common import train_step_flops
  from configs import cyclegan, srn

  return {"srn": train_step_flops("srn", srn.get_config(), srn_batch, size),
          "cyclegan": train_step_flops("cyclegan", cyclegan.get_config(), cyclegan_batch, size)}


# ---------------------------------------------------------------------------------------------
# The parent


class Stopped(Exception):
  """A child stopped at its deadline (or not started: no time left), with what it printed."""

  def __init__(self, message: str, records: list[dict]):
    super().__init__(message)
    self.records = records


def _json_lines(stdout: str) -> list[dict]:
  records = []
  for line in stdout.splitlines():
    if line.startswith("{"):
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:  # a line cut off by a stop
        pass
  return records


class Run:
  """Runs cases in child processes within a deadline and keeps the results on disk."""

  def __init__(self, args: argparse.Namespace, out: pathlib.Path):
    self.args, self.out = args, out
    self.sizes = SMALL if args.small else FULL
    self.torch_device = args.torch_device or ("cpu" if args.small else "cuda")
    self.start = time.monotonic()
    now = datetime.datetime.now(datetime.UTC)
    self.results: dict = {"date": now.strftime("%Y-%m-%d %H:%M UTC"), "small": args.small,
                          "sizes": self.sizes, "torch_device": self.torch_device,
                          "skipped": [], "errors": []}
    self.cache = tempfile.mkdtemp(prefix="faceblur_gpu_cache_")
    self.env = dict(os.environ, PYTHONUNBUFFERED="1", JAX_COMPILATION_CACHE_DIR=self.cache,
                    PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                             os.environ.get("PYTHONPATH")])))
    if args.small:  # a check, not a measurement: compile faster, stay on the CPU
      self.env["XLA_FLAGS"] = (self.env.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()
      self.env.setdefault("JAX_PLATFORMS", "cpu")
      self.env.setdefault("CUDA_VISIBLE_DEVICES", "")

  def elapsed(self) -> float:
    return time.monotonic() - self.start

  def child(self, argv: list[str], deadline: float, env: dict | None = None) -> list[dict]:
    """Runs `python *argv` until `deadline` (monotonic seconds); its stdout's JSON lines.

    Its process group is stopped at the deadline (its own children too); the error then
    carries the JSON lines printed until then (`records`). stderr passes through; a failure
    raises with the last of it.
    """
    timeout = deadline - time.monotonic()
    if timeout <= 5:
      raise Stopped("no time left in this part's budget", [])
    process = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               env=env or self.env, start_new_session=True)
    try:
      stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      os.killpg(process.pid, signal.SIGKILL)
      stdout, _ = process.communicate()
      raise Stopped(f"stopped after {timeout:.0f} s (its budget)", _json_lines(stdout)) from None
    sys.stderr.write(stderr[-4000:] if process.returncode else "")
    if process.returncode:
      last = [line for line in stderr.strip().splitlines() if line.strip()][-3:]
      raise RuntimeError(f"exit {process.returncode}: {' / '.join(last)}")
    return _json_lines(stdout)

  def attempt(self, part: str, name: str, argv: list[str], deadline: float,
              env: dict | None = None, limit_s: float = 0.0) -> list[dict]:
    """`child` within `deadline` and `limit_s` (default CASE_LIMIT_S) from now, recording an
    error or a stop under `name` instead of raising; a stopped child's records are kept."""
    started = time.monotonic()
    try:
      records = self.child(argv, min(deadline, started + (limit_s or CASE_LIMIT_S)), env)
    except (Stopped, RuntimeError) as error:
      kind = "skipped" if isinstance(error, Stopped) else "errors"
      self.results[kind].append(f"{part}: {name}: {error}")
      verdict = "SKIPPED" if kind == "skipped" else "FAILED"
      print(f"[{self.elapsed():5.0f} s] {part}: {name}: {verdict}: {error}", flush=True)
      return getattr(error, "records", [])
    print(f"[{self.elapsed():5.0f} s] {part}: {name}: {time.monotonic() - started:.0f} s",
          flush=True)
    return records

  def save(self) -> None:
    (self.out / "results.json").write_text(json.dumps(self.results, indent=1, default=str))
    (self.out / "results.md").write_text(markdown(self.results))

  # --- the parts -----------------------------------------------------------------------------

  def peak(self, deadline: float) -> None:
    records = self.attempt("peak", "matmul", [__file__, "--case=peak",
                                              f"--matmul={self.sizes['matmul']}"], deadline)
    if records:
      self.results["peak"] = records[-1]

  def train(self, deadline: float, with_torch: bool) -> None:
    sizes, rows = self.sizes, self.results.setdefault("train", [])
    cases = [("srn", sizes["srn_batch"]), ("cyclegan", sizes["cyclegan_batch"])]
    for mixed in (False, True):
      for stage, batch in cases:
        common = [str(BENCH / "train_step.py"), f"--size={sizes['size']}",
                  f"--warmup={sizes['warmup']}", f"--repeats={sizes['repeats']}",
                  f"--mixed_precision={mixed}", f"--torch_device={self.torch_device}"]
        dtype = "bf16" if mixed else "f32"
        frameworks = [("faceblur", f"faceblur:{stage}:{batch}")]
        if with_torch:
          frameworks += [(f"pytorch {layout}", f"pytorch:{stage}:{batch}:{layout}")
                         for layout in ("nchw", "channels_last")]
        for label, case in frameworks:
          for record in self.attempt("train", f"{stage} {dtype} {label}",
                                     [*common, f"--case={case}"], deadline):
            rows.append(record | {"mixed_precision": mixed})
          self.save()
    self.add_train_flops(rows)

  def add_train_flops(self, rows: list[dict]) -> None:
    """Network FLOPs per step (counted here, in a child, once per stage) and MFU per row."""
    sizes = self.sizes
    code = [__file__, "--case=flops", f"--size={sizes['size']}",
            f"--srn_batch={sizes['srn_batch']}", f"--cyclegan_batch={sizes['cyclegan_batch']}"]
    env = dict(self.env, JAX_PLATFORMS="cpu")  # shapes only: no GPU needed
    try:
      flops = self.child(code, time.monotonic() + 120, env)[-1]
    except (Stopped, RuntimeError, IndexError) as error:
      self.results["errors"].append(f"train: FLOP count: {error}")
      return
    self.results["train_flops"] = flops
    peak = self.results.get("peak", {})
    for row in rows:
      achieved = flops[row["stage"]] / row["step_s"] / 1e9
      row["gflops_per_step"] = round(flops[row["stage"]] / 1e9, 1)
      row["achieved_tflops_per_s"] = float(f"{achieved / 1e3:.3g}")
      row["mfu_vs_nominal_bf16_percent"] = float(
          f"{100 * achieved / (self.args.nominal_tflops * 1e3):.3g}")
      if not row["mixed_precision"] and peak.get("float32_gflops_per_s"):
        row["vs_measured_f32_matmul_percent"] = round(
            100 * achieved / peak["float32_gflops_per_s"], 1)
    self.save()

  def deblur(self, deadline: float, with_torch: bool) -> None:
    sizes = self.sizes
    argv = [str(BENCH / "deblur.py"), f"--sizes={sizes['deblur_sizes']}",
            f"--repeats={sizes['deblur_repeats']}", "--budget_s=20",
            f"--faces={sizes['deblur_faces']}",
            f"--torch_device={self.torch_device}",
            f"--frameworks={'faceblur,pytorch' if with_torch else 'faceblur'}"]
    # Its parent process writes the checkpoint with JAX while its cases run: no preallocation.
    env = dict(self.env, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    records = self.attempt("deblur", sizes["deblur_sizes"], argv, deadline, env,
                           limit_s=deadline - time.monotonic())
    rows = [r for r in records if "latency_s" in r]
    for row in rows:  # deblur.py prints each row before it knows the ratios
      torch_rows = [r for r in rows if r["framework"] == "pytorch" and r["size"] == row["size"]]
      if row["framework"] == "faceblur" and torch_rows:
        best = min(torch_rows, key=lambda r: r["latency_s"])
        row["vs_pytorch"] = f"**{best['latency_s'] / row['latency_s']:.2f}** (vs {best['layout']})"
    self.results["deblur"] = rows
    self.save()

  def pipeline(self, deadline: float) -> None:
    sizes = self.sizes
    argv = [str(BENCH / "input_pipeline.py"), "--modes=", f"--size={sizes['size']}",
            f"--srn_batch={sizes['srn_batch']}", f"--cyclegan_batch={sizes['cyclegan_batch']}",
            f"--num_workers={sizes['num_workers']}", f"--num_files={sizes['num_files']}",
            f"--pipeline_batches={sizes['pipeline_batches']}", "--rounds=1", "--warmup=0"]
    env = dict(self.env, XLA_PYTHON_CLIENT_PREALLOCATE="false")  # 16 workers beside it
    records = self.attempt("pipeline", f"{sizes['num_workers']} workers", argv, deadline, env,
                           limit_s=deadline - time.monotonic())
    rows = []
    for record in records:
      if "stage" not in record or not record.get("pipeline_alone_batches_per_s"):
        continue
      row = {"stage": record["stage"], "batch": record["batch"],
             "num_workers": record["num_workers"],
             "pipeline_pairs_per_s": round(record["pipeline_alone_batches_per_s"]
                                           * record["batch"], 1)}
      for step in self.results.get("train", []):
        if step["framework"] == "faceblur" and step["stage"] == row["stage"]:
          key = "bf16" if step["mixed_precision"] else "f32"
          row[f"step_{key}_pairs_per_s"] = step["images_per_s"]
          row[f"headroom_{key}"] = round(row["pipeline_pairs_per_s"] / step["images_per_s"], 2)
      rows.append(row)
    self.results["pipeline"] = rows
    self.save()


def missing_modules(parts: list[str]) -> dict[str, list[str]]:
  """Each needed module that cannot be found, with the parts that need it."""
  missing: dict[str, list[str]] = {}
  for part in parts:
    for module in NEEDS[part][0]:
      if importlib.util.find_spec(module) is None:
        missing.setdefault(module, []).append(part)
  return missing


def probe(parts: list[str], env: dict) -> dict:
  """{"errors": {part: the error its imports raise}, "platform": JAX's} from a fresh child."""
  codes = json.dumps({part: NEEDS[part][1] for part in parts})
  result = subprocess.run([sys.executable, "-c", _PROBE, codes], capture_output=True,
                          text=True, cwd=ROOT, env=env, check=False)
  try:
    return json.loads(result.stdout.strip().splitlines()[-1])
  except (IndexError, json.JSONDecodeError):
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    error = lines[-1] if lines else f"exit {result.returncode}"
    return {"errors": dict.fromkeys(parts, error), "platform": None}


def pins() -> dict[str, str]:
  """pyproject.toml's pinned versions, by distribution name."""
  project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
  pinned = {}
  for requirement in project["dependencies"]:
    name, _, version = requirement.partition("==")
    pinned[name.strip().lower().replace("_", "-")] = version.strip()
  return pinned


def wheel_command(distributions: list[str]) -> str:
  """How to bring `distributions` to the GPU machine (/work/.library/device/README.md)."""
  pinned = pins()
  names = " ".join(f"{name}=={pinned[name.lower()]}" if name.lower() in pinned else name
                   for name in distributions)
  return ("here, in the repository root: echo /.whl/ >> .git/info/exclude; python3 -m pip "
          "download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "
          "--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 "
          f"--platform manylinux2014_x86_64 -d .whl {names}\n"
          "there (carry .whl), before the script: python3 -m pip install -q --no-index "
          "--no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site")


def markdown(results: dict) -> str:
  """The results as a bench/RESULTS.md section."""
  lines = [f"## GPU ({results['date']})", ""]
  if results["small"]:
    lines += ["**A --small check run on a CPU: tiny sizes, nothing here is a measurement.**", ""]
  peak = results.get("peak")
  if peak:
    lines += [f"`python bench/gpu.py`, {peak['device']}, jax {peak['jax']}. Matrix product "
              f"{peak['matmul_size']}^2: float32 {peak['float32_gflops_per_s'] / 1e3:.3g} TFLOP/s "
              f"(JAX's default precision), bfloat16 {peak['bfloat16_gflops_per_s'] / 1e3:.3g} "
              "TFLOP/s.", ""]
  train = results.get("train", [])
  if train:
    lines += ["### Train steps", "",
              "Network FLOPs per step (`bench.common.train_step_flops`; the same for both "
              "frameworks). MFU: against the card's nominal dense bf16 rate; float32 rows also "
              "against the float32 matrix product measured above. PyTorch: eager, "
              "cudnn.benchmark, TF32 convolutions (its default), bf16 rows under autocast.", "",
              "| stage | batch | dtype | framework | layout | step ms | images/s | "
              "faceblur / faster PyTorch | compile s | TFLOP/s | MFU vs bf16 nominal % | "
              "vs f32 matmul % |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in train:
      ratio = ""
      if row["framework"] == "faceblur":
        torch_rows = [r for r in train if r["framework"] == "pytorch" and r["stage"] == row[
            "stage"] and r["mixed_precision"] == row["mixed_precision"]]
        if torch_rows:
          best = min(torch_rows, key=lambda r: r["step_s"])
          ratio = f"**{best['step_s'] / row['step_s']:.2f}** (vs {best['layout']})"
      lines.append(
          f"| {row['stage']} | {row['batch']} | {'bf16' if row['mixed_precision'] else 'f32'} | "
          f"{row['framework']} | {row.get('layout', '')} | {1e3 * row['step_s']:.1f} | "
          f"{row['images_per_s']} | {ratio} | {row.get('compile_s') or ''} | "
          f"{row.get('achieved_tflops_per_s', '')} | "
          f"{row.get('mfu_vs_nominal_bf16_percent', '')} | "
          f"{row.get('vs_measured_f32_matmul_percent', '')} |")
    lines.append("")
  deblur = results.get("deblur", [])
  if deblur:
    lines += ["### Deblur", "", "faceblur: the deblur job's path (`bench/deblur.py`: tiles, "
              "blend); PyTorch: one forward of the whole image.", "",
              "| size | framework | layout | tiles | latency s | MP/s | faceblur / faster "
              "PyTorch | compile s |", "|---|---|---|---|---|---|---|---|"]
    for row in deblur:
      lines.append(f"| {row['size']} | {row['framework']} | {row.get('layout', '')} | "
                   f"{row.get('tiles', '')} | {row['latency_s']} | {row['megapixels_per_s']} | "
                   f"{row.get('vs_pytorch', '')} | {row.get('compile_s', '')} |")
    lines.append("")
  pipeline = results.get("pipeline", [])
  if pipeline:
    lines += ["### Input pipeline", "", "The pipeline alone (`bench/input_pipeline.py "
              "--modes=`), pairs/s, against what faceblur's step consumes (headroom > 1: the "
              "pipeline keeps up).", "",
              "| stage | batch | workers | pipeline pairs/s | f32 step pairs/s | headroom | "
              "bf16 step pairs/s | headroom |", "|---|---|---|---|---|---|---|---|"]
    for row in pipeline:
      lines.append(f"| {row['stage']} | {row['batch']} | {row['num_workers']} | "
                   f"{row['pipeline_pairs_per_s']} | {row.get('step_f32_pairs_per_s', '')} | "
                   f"{row.get('headroom_f32', '')} | {row.get('step_bf16_pairs_per_s', '')} | "
                   f"{row.get('headroom_bf16', '')} |")
    lines.append("")
  for key, title in (("missing", "Missing packages"), ("skipped", "Skipped"),
                     ("errors", "Errors")):
    if results.get(key):
      lines += [f"{title}:", ""] + [f"- {item}" for item in results[key]] + [""]
  return "\n".join(lines)


def main(argv=None) -> int:
  args = parse_args(argv)
  if args.case == "peak":
    print(json.dumps(peak_case(args.matmul)), flush=True)
    return 0
  if args.case == "flops":
    print(json.dumps(flops_case(args.size, args.srn_batch, args.cyclegan_batch)), flush=True)
    return 0
  parts = [part.strip() for part in args.parts.split(",") if part.strip()]
  unknown = sorted(set(parts) - set(PARTS))
  if unknown:
    print(f"bench/gpu.py: --parts: unknown {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    return 2
  out = pathlib.Path(args.out or os.environ.get("OUT") or tempfile.mkdtemp(prefix="gpu_bench_"))
  out.mkdir(parents=True, exist_ok=True)
  run = Run(args, out)

  checked = parts + (["torch"] if {"train", "deblur"} & set(parts) else [])
  missing = missing_modules(checked)
  probed = probe([part for part in checked
                  if not any(part in needers for needers in missing.values())], run.env)
  broken = probed["errors"]
  unusable = {part for needers in missing.values() for part in needers} | set(broken)
  if missing or broken:
    run.results["missing"] = [f"{module} ({DISTRIBUTIONS.get(module, module)}): needed by "
                              f"{', '.join(needers)}" for module, needers in missing.items()]
    run.results["missing"] += [f"{part}: {error}" for part, error in broken.items()]
    print("bench/gpu.py: missing, the parts that need them are skipped:")
    for line in run.results["missing"]:
      print(f"  {line}")
    distributions = sorted({DISTRIBUTIONS.get(module, module) for module in missing})
    if distributions:
      print("to bring them:\n" + wheel_command(distributions))
  with_torch = "torch" not in unusable
  if not with_torch and {"train", "deblur"} & set(parts):
    run.results["skipped"].append("PyTorch side by side (torch unusable)")
  if not args.small and probed["platform"] != "gpu":
    print(f"bench/gpu.py: JAX's device is {probed['platform'] or 'unknown'}, not a GPU: run "
          "with --small on a CPU, or install jax with CUDA")
    return 1
  if with_torch and not args.small and run.torch_device == "cuda":
    check = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True, env=run.env, check=False)
    if check.stdout.strip() != "True":
      run.results["skipped"].append("PyTorch side by side (torch sees no CUDA device)")
      with_torch = False
  print(f"bench/gpu.py: {'--small check' if args.small else 'GPU run'}, results in {out}",
        flush=True)

  budget_end = run.start + args.budget_s
  for index, part in enumerate(parts):
    if part in unusable:
      run.results["skipped"].append(f"{part} (missing packages)")
      continue
    remaining = [p for p in parts[index:] if p not in unusable]
    share = SHARES[part] / sum(SHARES[p] for p in remaining)
    deadline = time.monotonic() + share * (budget_end - time.monotonic())
    if part == "peak":
      run.peak(deadline)
    elif part == "train":
      run.train(deadline, with_torch)
    elif part == "deblur":
      run.deblur(deadline, with_torch)
    else:
      run.pipeline(deadline)
    run.save()
  run.results["wall_s"] = round(run.elapsed(), 1)
  run.save()
  print((out / "results.md").read_text())
  print(f"bench/gpu.py: {run.results['wall_s']} s; {out / 'results.json'}, {out / 'results.md'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
