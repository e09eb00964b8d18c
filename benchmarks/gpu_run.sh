#!/usr/bin/env bash
# The GPU check, in one script, from the repository root on a machine with one CUDA GPU (<= 7.5 minutes):
# versions and nvidia-smi, the GPU tests, benchmarks/gpu_step.py, and one `mgspec train` epoch on the
# CIFAR-10 subset in .gpudata/ (its fixed cost: start-up, compilation, capture). Everything goes to
# $OUT, bundled into at most 8 files.
#
#   OUT=/tmp/out bash benchmarks/gpu_run.sh           # on the GPU machine
#   DRY=1 OUT=/tmp/out bash benchmarks/gpu_run.sh     # here, on the CPU: short and tiny
#
# Wheels in .whl/ (pydantic and friends, where the machine's Python lacks them) are installed into
# /tmp/site first. BUDGET (default 330) is gpu_step.py's share in seconds.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
DRY=${DRY:-0}
BUDGET=${BUDGET:-330}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
START=$(date +%s)
if compgen -G ".whl/*.whl" > /dev/null; then
    $PY -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl > "$OUT/install.log" 2>&1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

{
    echo "== date"; date -u
    echo "== versions"
    $PY - <<'PY'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version(), "gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else None)
try:
    import triton; print("triton", triton.__version__)
except ImportError:
    print("triton absent")
PY
    echo "== nvidia-smi"; nvidia-smi 2>&1 || echo "no nvidia-smi"
    echo "== load"; cat /proc/loadavg; nproc
} > "$OUT/env.txt" 2>&1

# 1. GPU tests (skip cleanly without CUDA)
tests=()
for t in tests/test_gpu_kernels.py tests/test_gpu_train.py; do [ -f "$t" ] && tests+=("$t"); done
if [ "$DRY" = 1 ]; then tests=(tests/test_cost.py); fi
if [ "${SKIP_TESTS:-0}" = 1 ]; then tests=(); fi  # the caller ran them already
if [ ${#tests[@]} -gt 0 ]; then
    timeout 90 $PY -m pytest -q -x -p no:cacheprovider "${tests[@]}" -m "not slow" > "$OUT/tests.log" 2>&1
    echo "tests rc=$?" >> "$OUT/tests.log"
fi

# 2. the benchmark
if [ "$DRY" = 1 ]; then
    timeout 120 $PY benchmarks/gpu_step.py --dry --budget 60 --out "$OUT/step" > "$OUT/gpu_step.log" 2>&1
else
    timeout $((BUDGET + 30)) $PY benchmarks/gpu_step.py --budget "$BUDGET" --out "$OUT/step" > "$OUT/gpu_step.log" 2>&1
fi
echo "gpu_step rc=$?" >> "$OUT/gpu_step.log"

# 3. one training epoch on the CIFAR-10 subset, as a user runs it: wall time is the fixed cost + the epoch
DATA=${DATA:-../shared/data/cifar-10-batches-py}
if [ "$DRY" = 1 ]; then  # a tiny synthetic CIFAR-10 in the official format
    rm -rf .gpudata/dry && $PY -c "from pathlib import Path; from tests.synthetic import write_cifar; write_cifar(Path('.gpudata/dry'))"
elif [ ! -d .gpudata/cifar-10-batches-py ] && [ -d "$DATA" ]; then
    mkdir -p .gpudata && cp -r "$DATA" .gpudata/
fi
TRAIN_DATA=.gpudata/cifar-10-batches-py
[ "$DRY" = 1 ] && TRAIN_DATA=.gpudata/dry/cifar-10-batches-py
{
    if [ -d $TRAIN_DATA ]; then
        DEVICE=cuda; [ "$DRY" = 1 ] && DEVICE=cpu
        for variant in "--no-compile" ""; do
            [ "$DRY" = 1 ] && [ -z "$variant" ] && continue
            left=$((450 - $(date +%s) + START))
            [ $left -lt 40 ] && { echo "train ${variant:-default}: skipped, $left s left"; continue; }
            t0=$(date +%s%N)
            timeout $((left - 10)) $PY -m mgspec train specs/mgiad_small_cifar10.yaml -d cifar10 \
                --data-dir $TRAIN_DATA --epochs 1 -q --device $DEVICE $variant \
                -o "/tmp/gpu-run-train${variant}" 2>&1 | tail -20
            echo "train ${variant:-default (compile)}: rc=${PIPESTATUS[0]} wall $(( ($(date +%s%N) - t0) / 1000000 )) ms"
            cat "/tmp/gpu-run-train${variant}/summary.json" 2>/dev/null
            rm -rf "/tmp/gpu-run-train${variant}"
        done
    else
        echo "no CIFAR-10 subset at $DATA or .gpudata/: training skipped"
    fi
} > "$OUT/train.log" 2>&1

# bundle: at most 8 files come back
cp "$OUT/step/gpu_step.md" "$OUT/gpu_step.md" 2>/dev/null
cp "$OUT/step/gpu_step.json" "$OUT/gpu_step.json" 2>/dev/null
rm -rf "$OUT/step"
echo "total $(( $(date +%s) - START )) s" >> "$OUT/env.txt"
tail -n 40 "$OUT/gpu_step.md" 2>/dev/null
tail -n 5 "$OUT/train.log" "$OUT/tests.log" 2>/dev/null
ls "$OUT"
