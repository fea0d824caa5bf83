#!/usr/bin/env bash
# Every CPU benchmark of bench/RESULTS.md in one run, one after another, on an otherwise idle
# machine (a job beside them skews both frameworks' figures):
#
#   bash bench/run_all.sh [OUTPUT_DIR]     # default runs/bench; 44 min on the 2-vCPU EPYC
#
# Each benchmark's JSON lines and table go to OUTPUT_DIR/<name>.log. The PyTorch side needs
# `pip install -e '.[bench]'`. `bench/gpu.py` is the GPU run and is not part of this.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/bench}
mkdir -p "$out"
python=${PYTHON:-python}

run() {
  local name=$1
  shift
  echo "== $name: $*"
  local started=$SECONDS
  "$python" "$@" >"$out/$name.log" 2>&1 || { echo "   failed, see $out/$name.log"; return 1; }
  echo "   $((SECONDS - started)) s"
}

run train_step bench/train_step.py --cyclegan_batches=1,4 --srn_batches=4,16 --repeats=3 \
  --warmup=1
run deblur bench/deblur.py --sizes=256x256,1280x720 --repeats=3
run deblur_12mp bench/deblur.py --sizes=4000x3000 --faces= --frameworks=faceblur --repeats=1
run convolutions bench/convolutions.py --networks=cyclegan,srn --repeats=3
run forward bench/forward.py --cases=demo_eval,ref_256 --rounds=5
run synthesis bench/synthesis.py --count=32
run input_pipeline bench/input_pipeline.py --size=64 --srn_batch=4 --cyclegan_batch=1 \
  --steps=15 --rounds=3 --warmup=4 --num_files=32
run input_pipeline_alone bench/input_pipeline.py --modes= --pipeline_batches=60
