#!/usr/bin/env bash
# One lent-GPU session's checks in one go (the device tool's machine: torch, no pydantic/Ray/MLflow):
#   bash benchmarks/gpu_session.sh [OUT]     results and logs under OUT (default ./gpu-session)
# 1. the GPU throughput table (and the same populations on the machine's CPU cores), 2. the CUDA
# tests, 3. a profile of the largest uwm pack. Pydantic travels as wheels in .whl/ when it is missing.
set -uo pipefail
OUT=${1:-${OUT:-gpu-session}}
mkdir -p "$OUT"
if ! python3 -c "import pydantic" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory,power.limit --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
t0=$SECONDS
timeout ${BENCH_TIMEOUT:-300} python3 benchmarks/gpu_throughput.py --steps ${STEPS:-100} \
    --populations ${POPULATIONS:-10x1 65536x8 65536x1} --rules ${RULES:-uwm wm} --draws ${DRAWS:-auto} \
    --cpu-populations ${CPU_POPULATIONS:-1024x8 65536x8} --cpu-steps 2 --modes ${MODES:-on} 2>&1 | tee "$OUT/throughput.txt"
timeout 120 python3 benchmarks/gpu_throughput.py --steps ${STEPS:-100} --populations 65536x8 --rules uwm --draws block \
    --cpu-populations none 2>&1 | grep -E "^ +cuda " | tee -a "$OUT/throughput.txt"
timeout 90 python3 benchmarks/update_bandwidth.py 2>&1 | tail -7 | tee -a "$OUT/throughput.txt"
echo "benchmark: $((SECONDS - t0)) s"; t0=$SECONDS
timeout ${TEST_TIMEOUT:-240} python3 -m pytest -q -x -p no:cacheprovider tests/test_gpu.py --durations=12 -s 2>&1 \
    | tee "$OUT/test_gpu.txt" | grep -v "^$" | tail -25
echo "tests: $((SECONDS - t0)) s"; t0=$SECONDS
if [ -n "${PROFILE:-1}" ]; then
    timeout 120 python3 benchmarks/gpu_throughput.py --steps 20 --populations 65536x8 --rules uwm \
        --cpu-populations none --profile "$OUT/profile.txt" > /dev/null 2>&1
    echo "profile: $((SECONDS - t0)) s"
fi
cat "$OUT/throughput.txt" | grep -E "^ +(cuda|cpu) |where|torch"
