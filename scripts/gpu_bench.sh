#!/usr/bin/env bash
# The GPU benchmark of issue #5 as one prepared job for a lent device machine (no network there).
#
#   bash scripts/gpu_bench.sh prepare   # here: wheels of Meta's reference and its pure-Python needs -> .whl/
#   bash scripts/gpu_bench.sh run       # there (carry .whl): tiny, then base_plus, 1024 px, bf16 -> $OUT or out/gpu/
#
# The device image has CUDA torch, numpy, pillow, pyyaml; only the reference (`sam2==1.1.0`,
# built without its CUDA extension, which it does not need) and hydra/iopath travel. Each
# model writes its JSON as soon as it is done, so a run cut off at the time limit keeps tiny.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
case "${1:-}" in
  prepare)
    rm -rf .whl && mkdir -p .whl
    SAM2_BUILD_CUDA=0 python3 -m pip wheel -q --no-deps --no-build-isolation -w .whl sam2==1.1.0
    # The versions the test suite's reference runs with (setup.sh).
    python3 -m pip wheel -q --no-deps -w .whl \
      hydra-core==1.3.8 omegaconf==2.3.1 iopath==0.1.10 antlr4-python3-runtime==4.9.3
    ls -la .whl
    ;;
  run)
    out="${OUT:-out/gpu}"
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$ROOT" PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
    for model in tiny base_plus; do
      python3 -m sam2_ros.bench engine --model "$model" --image-size 1024 --device cuda --dtype bfloat16 \
        --reference-mode both --compile --frames 100 --objects 1,4 \
        --json "$out/engine_${model}_1024_cuda.json" --plot "$out/engine_${model}_1024_cuda.png" 2>&1 \
        | tee "$out/engine_${model}.log"
    done
    ;;
  *)
    echo "usage: bash scripts/gpu_bench.sh prepare|run" >&2
    exit 2
    ;;
esac
