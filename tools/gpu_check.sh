#!/usr/bin/env bash
# Every GPU-only path and the GPU benchmarks, on one CUDA GPU, within about 6 minutes:
#
#   make gpu-check CIFAR=/path/to/cifar10-jpeg          # the folder, or the .tar.gz archive
#   PYTHON=/opt/python3 tools/gpu_check.sh /path/to/cifar10-jpeg.tar.gz
#
# It uses the machine's own python3 and its torch (no virtual environment, nothing installed;
# PYTHON overrides), and writes only under a fresh folder in $TMPDIR. The parts, each under a
# time limit: the `cuda` tests (pytest if installed, else the tests' own runner), the
# throughput benchmark plain and with --amp bf16 --compile, one timed CIFAR-10 epoch with and
# without the penalty, and a one-process torchrun that joins an NCCL process group and writes a
# checkpoint. The last line is one JSON object: every part's result, exit status and seconds.
# Without CUDA it says so in one line and exits 2, having created nothing.
set -u
PY="${PYTHON:-python3}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
CIFAR="${1:-${CIFAR:-}}"

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu-check: $PY sees no CUDA GPU (or has no torch); run this on a GPU machine" >&2
    exit 2
fi
if [ -z "$CIFAR" ] || [ ! -e "$CIFAR" ]; then
    echo "gpu-check: CIFAR-10 not found at '$CIFAR'; give its folder or .tar.gz: make gpu-check CIFAR=PATH" >&2
    exit 2
fi

START=$(date +%s)
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
# Output reaches the part's file as it is printed (a part stopped at its limit keeps it), and no
# __pycache__ is written into the repository.
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
echo "gpu-check: $("$PY" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))'), work folder $WORK"

if [ -f "$CIFAR" ]; then
    mkdir -p "$WORK/cifar"
    TRAIN=""
    tar xf "$CIFAR" -C "$WORK/cifar" && TRAIN="$(find "$WORK/cifar" -maxdepth 3 -type d -name train | head -n 1)"
    if [ -z "$TRAIN" ]; then
        echo "gpu-check: $CIFAR did not unpack to a folder holding train/ (see $WORK/cifar)" >&2
        exit 2
    fi
    CIFAR_DIR="$(dirname "$TRAIN")"
else
    CIFAR_DIR="$(cd "$CIFAR" && pwd)"
fi
# torch.compile's GPU kernels (Triton) are built with the system's C compiler and Python.h
# (tests/test_cuda.py's compiler_available, the test that skips without them).
cd "$REPO" || exit 1
if "$PY" -c 'import sys; sys.path.insert(0, "tests"); import test_cuda as t
sys.exit(0 if t.compiler_available() else 1)'; then
    COMPILE=(--compile)
else
    COMPILE=()
    echo "gpu-check: no C compiler or Python.h here, so torch.compile cannot run: timing bf16 alone"
fi
# The naive baseline's data-loader workers pass batches through /dev/shm (64 MB in some containers).
WORKERS=8
[ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $2}')" -lt 1048576 ] 2>/dev/null && WORKERS=0

part() {  # part NAME LIMIT_SECONDS COMMAND...: run it, show its tail, record status and seconds
    local name=$1 limit=$2 t0 status
    shift 2
    t0=$(date +%s)
    echo "== $name (at most ${limit} s): $*"
    timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.out" 2>&1
    status=$?
    tr '\r' '\n' <"$WORK/$name.out" | grep -v 'it/s' | tail -n 12
    echo "$name $status $(($(date +%s) - t0))" >>"$WORK/parts"
}

cd "$REPO" || exit 1
if "$PY" -c 'import pytest' 2>/dev/null; then
    part cuda_tests 120 "$PY" -m pytest -q -rA -p no:cacheprovider -m cuda tests/test_cuda.py
else
    part cuda_tests 120 "$PY" tests/test_cuda.py
fi
BENCH=(-m benchmarks.throughput --device cuda --arch resnet18 --batch-size 512 --num-workers "$WORKERS")
part throughput 45 "$PY" "${BENCH[@]}" --cifar "$CIFAR_DIR"
part throughput_bf16_compile 90 "$PY" "${BENCH[@]}" --cifar "$CIFAR_DIR" --amp bf16 ${COMPILE[@]+"${COMPILE[@]}"}
part epoch 60 "$PY" -m benchmarks.gpu_epoch --cifar "$CIFAR_DIR" --device cuda
cd "$WORK" || exit 1
part nccl 30 env INVCLR_FORCE_PROCESS_GROUP=1 "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 \
    "$REPO/invariance_by_gradient.py" --dataset spirograph --arch resnet18 --width 0.25 \
    --proportion 0.001 --batch-size 32 --num-epochs 1 --test-freq 0 --lambda-gp 0.01 \
    --gp-upper-limit 1000 --device cuda --num-workers 0 --checkpoint-dir "$WORK/checkpoint" \
    --filename nccl

"$PY" - "$WORK" "$(($(date +%s) - START))" "${#COMPILE[@]}" <<'EOF'
import json
import re
import sys
from pathlib import Path

work, seconds = Path(sys.argv[1]), int(sys.argv[2])


def last_json(text):
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


summary, ok = {}, True
for line in (work / "parts").read_text().splitlines():
    name, status, spent = line.split()
    text = (work / f"{name}.out").read_text(errors="replace")
    entry = {"status": int(status), "seconds": int(spent)}  # 124: stopped at its time limit
    if name == "cuda_tests":
        entry.update({k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped)", text)})
    elif name == "nccl":
        entry["process_group"] = "nccl" if "process group nccl" in text else None
        entry["checkpoint"] = (work / "checkpoint" / "nccl.pth").is_file()
        entry["status"] = int(status) or int(not (entry["process_group"] and entry["checkpoint"]))
    else:
        entry["result"] = last_json(text)
    ok &= entry["status"] == 0
    summary[name] = entry
summary.update(compile=sys.argv[3] == "1", passed=bool(ok), seconds=seconds, work=str(work))
print(json.dumps(summary))
sys.exit(0 if ok else 1)
EOF
