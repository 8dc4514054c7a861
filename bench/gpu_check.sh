#!/usr/bin/env bash
# One command that checks every NVIDIA path of Backprop on a real GPU, in about 5 minutes.
#
#   bash bench/gpu_check.sh [OUTDIR] [--no-install] [--fake GPUS.json] [--smoke] [--budget S]
#
# On a machine with one NVIDIA GPU (Python 3.12 with torch, psutil, nvidia-ml-py, rich and
# pytest installed, no package index), in this order, each step under its own `timeout`:
#   1. install  the project and what the machine lacks from the wheels `bench/gpu_wheels.sh`
#               put in .gpu-wheels/ (pip --no-index; torch and the other preinstalled
#               packages are left as they are, and the check fails if torch changed);
#   2. pytest   `pytest -m gpu`: the tests that compare Backprop with the driver;
#   3. train    examples/train_gpu.py under `backprop run --gpus 1` (real CUDA training);
#   4. tui      while it trains, the TUI opens for a few seconds under Textual's headless
#               pilot (no tmux needed) and its screen is saved;
#   5. bench    `python -m bench --only 5 --quick`: NVML poll latency against nvidia-smi,
#               steps/s under Backprop against the same script run directly, the TUI's CPU
#               with the footer live.
# A failing step is reported and the next one runs. Everything lands in OUTDIR (else $OUT),
# at most 8 files and no sub-folders (what a remote runner's output folder brings back):
#   summary.txt (the verdict, each step, nvidia-smi), check.log (all output), pytest.txt,
#   figures.md, run.txt (the training run), screen.svg and screen.txt (the TUI).
# The last line is the verdict: `GPU CHECK: PASS ...` or `GPU CHECK: FAIL: <what>`; the exit
# status is 0 or 1 (2: bad arguments).
#
# --no-install   use the packages already importable (this repository's checkout runs anyway)
# --fake FILE    no GPU: every Backprop process reads the fake GPUs FILE describes
#                (BACKPROP_FAKE_NVML); the gpu tests then skip. How the CPU suite keeps this
#                script from rotting (tests/e2e/test_gpu_check_script.py); never a GPU result.
# --smoke        tiny sizes everywhere (the CPU suite)
# --budget S     total seconds (default 300); each step's limit is cut to what is left
# GPU_CHECK_TESTS  the test paths for step 2 (default: tests)
# shellcheck disable=SC2317  # the step functions run through `step`, in a child bash
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT_DIR=""
INSTALL=1
FAKE=""
SMOKE=0
BUDGET=300
WHEELS=${GPU_CHECK_WHEELS:-$ROOT/.gpu-wheels}
PY=${PYTHON:-python3}

usage() {
    sed -n '2,4p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while (($#)); do
    case $1 in
    --no-install) INSTALL=0 ;;
    --fake)
        (($# >= 2)) || usage
        FAKE=$(realpath "$2")
        shift
        ;;
    --smoke) SMOKE=1 ;;
    --budget)
        if (($# < 2)) || ! [[ $2 =~ ^[0-9]+$ ]]; then usage; fi
        BUDGET=$2
        shift
        ;;
    -h | --help) usage ;;
    -*) echo "gpu_check: unknown option $1" >&2 && usage ;;
    *) OUT_DIR=$1 ;;
    esac
    shift
done
OUT_DIR=${OUT_DIR:-${OUT:-}}
if [[ -z $OUT_DIR ]]; then
    echo "gpu_check: give an output folder (or set OUT)" >&2
    usage
fi
mkdir -p "$OUT_DIR" || exit 2
OUT_DIR=$(cd "$OUT_DIR" && pwd)
MODE=real
[[ -n $FAKE ]] && MODE=fake

START=$(date +%s)
DEADLINE=$((START + BUDGET))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bp-gpu-check.XXXXXX")
RESULTS=()  # one line per step
FAILED=()   # what failed, for the verdict

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
unset BACKPROP_CONFIG BACKPROP_RUN_ID BACKPROP_RUN_DIR
export ROOT WHEELS PY SMOKE

# step NAME LIMIT CMD...: run CMD under `timeout`, cut to the budget left; record the outcome.
step() {
    local name=$1 cap=$2 left t began rc
    shift 2
    left=$((DEADLINE - $(date +%s)))
    if ((left < 10)); then
        echo "== $name: not run, the ${BUDGET}s budget is spent"
        RESULTS+=("$name: not run (budget spent)")
        FAILED+=("$name: not run (budget spent)")
        return 1
    fi
    t=$((cap < left ? cap : left))
    echo "== $name (limit ${t}s)"
    began=$(date +%s)
    if declare -F "$1" >/dev/null; then  # a function of this script: run it in a child bash
        timeout -k 5 "$t" bash -c '"$@"' "$name" "$@"
    else
        timeout -k 5 "$t" "$@"
    fi
    rc=$?
    echo "== $name: exit $rc after $(($(date +%s) - began))s"
    if ((rc == 124 || rc == 137)); then
        RESULTS+=("$name: timed out after ${t}s")
        FAILED+=("$name: timed out after ${t}s")
    elif ((rc != 0)); then
        RESULTS+=("$name: exit $rc")
        FAILED+=("$name: exit $rc")
    fi
    return "$rc"
}

# check NAME CMD...: a verdict line from bench/gpu_check_steps.py, recorded pass or fail.
check() {
    local name=$1 line rc
    shift
    line=$("$PY" "$ROOT/bench/gpu_check_steps.py" "$@" 2>&1 | tail -n 1)
    rc=$?  # pipefail: the checker's status, not tail's
    echo "$line"
    RESULTS+=("$line")
    ((rc == 0)) || FAILED+=("$name: ${line#*: }")
    return "$rc"
}

machine() {
    echo "mode: $MODE; budget ${BUDGET}s; repository $ROOT; output $OUT_DIR"
    echo "python: $("$PY" -c 'import sys; print(sys.version.split()[0], sys.executable)' 2>&1)"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=index,name,uuid,driver_version,memory.used,memory.total,utilization.gpu,temperature.gpu,mig.mode.current \
            --format=csv 2>&1
    else
        echo "nvidia-smi: not installed"
    fi
    [[ -n $FAKE ]] && echo "fake NVML: $FAKE: $(tr -d '\n' <"$FAKE" | cut -c1-300)"
    true
}

torch_version() {
    "$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo "none"
}

install() {
    [[ -d $WHEELS ]] || {
        echo "no wheel folder $WHEELS: run bench/gpu_wheels.sh first and carry .gpu-wheels"
        return 1
    }
    local before after
    before=$(torch_version)
    # Only-if-needed: what is installed already and satisfies the project stays as it is.
    "$PY" -m pip install --no-index --find-links "$WHEELS" --no-cache-dir \
        --disable-pip-version-check --no-warn-script-location -q backprop || return 1
    # pytest-asyncio only for the suite's ini option; --no-deps never swaps the machine's pytest.
    "$PY" -m pip install --no-index --find-links "$WHEELS" --no-deps --no-cache-dir \
        --disable-pip-version-check -q pytest-asyncio ||
        echo "pytest-asyncio: not installed (the gpu tests do not need it)"
    after=$(torch_version)
    echo "torch before: $before, after: $after"
    [[ $before == "$after" ]] || {
        echo "the install changed torch"
        return 1
    }
}

imports() {
    "$PY" - <<'EOF'
import importlib, importlib.metadata
dists = {"textual": "textual", "textual_plotext": "textual-plotext", "watchfiles": "watchfiles",
         "tomli_w": "tomli-w", "pynvml": "nvidia-ml-py", "psutil": "psutil", "rich": "rich",
         "torch": "torch", "pytest": "pytest"}
for name, dist in dists.items():
    importlib.import_module(name)
    print(f"{dist} {importlib.metadata.version(dist)}")
import tui.cli, runner, governor  # the repository's own code, through PYTHONPATH
print("backprop from", tui.cli.__file__)
EOF
}

train_start() {
    local home=$1 out=$2 args
    if ((SMOKE)); then
        args=(--steps 40 --batch 32 --width 32 --min-seconds 3)
    else
        args=(--steps 3000 --hold-gib 2 --min-seconds 15)
    fi
    printf '[governor]\npoll_interval = "0.2s"\nsample_interval = "1s"\n' >"$home/backprop.toml"
    BACKPROP_HOME=$home "$PY" -m tui.cli run --json --gpus 1 --name gpu-check \
        "$ROOT/examples/train_gpu.py" "${args[@]}" >"$out.json" || return 1
    "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$out.json" >"$out"
    echo "run $(cat "$out") submitted"
}

train_end() {
    BACKPROP_HOME=$1 "$PY" -m tui.cli logs -f "$2" >/dev/null
}

run_pytest() {  # the gpu tests read the real driver, never the fake; their homes under $1
    # shellcheck disable=SC2086  # GPU_CHECK_TESTS is a list of paths
    env -u BACKPROP_FAKE_NVML -u BENCH_GPU_SMOKE \
        "$PY" -m pytest -m gpu ${GPU_CHECK_TESTS:-tests} -p no:cacheprovider -rA \
        --basetemp "$1/pytest" -o console_output_style=classic >"$2" 2>&1
}

run_bench() {
    "$PY" -m bench --only 5 --quick -o "$1" >/dev/null
}

export -f install imports torch_version train_start train_end run_pytest run_bench

main() {
    machine
    [[ -n $FAKE ]] && export BACKPROP_FAKE_NVML=$FAKE
    ((SMOKE)) && export BENCH_GPU_SMOKE=1

    if ((INSTALL)); then
        step install 120 install && RESULTS+=("install: from $WHEELS")
    else
        RESULTS+=("install: skipped (--no-install)")
    fi
    step imports 60 imports

    step pytest 150 run_pytest "$WORK" "$OUT_DIR/pytest.txt"
    tail -n 15 "$OUT_DIR/pytest.txt"
    check pytest pytest "$OUT_DIR/pytest.txt" "$MODE"
    check cleanup cleanup "$WORK" >/dev/null

    local home=$WORK/home id=""
    mkdir -p "$home"
    if step train-start 60 train_start "$home" "$WORK/run-id"; then
        id=$(cat "$WORK/run-id")
        local wait=$((DEADLINE - $(date +%s) - 5))
        check train-running wait-running "$home" "$id" $((wait < 60 ? (wait > 1 ? wait : 1) : 60))
        step tui 60 "$PY" "$ROOT/bench/gpu_screen.py" --home "$home" --seconds $((SMOKE ? 1 : 5)) \
            --svg "$OUT_DIR/screen.svg" --text "$OUT_DIR/screen.txt" &&
            RESULTS+=("tui: $(head -n 1 "$OUT_DIR/screen.txt")")
        step train-end 90 train_end "$home" "$id"
        check train train "$home" "$id" "$MODE" "$OUT_DIR/run.txt"
    fi
    check cleanup cleanup "$WORK" >/dev/null

    step bench 150 run_bench "$OUT_DIR/figures.md"
    check figures figures "$OUT_DIR/figures.md" "$MODE"
    check cleanup cleanup "$WORK"

    local verdict
    if ((${#FAILED[@]} == 0)); then
        verdict="GPU CHECK: PASS"
        local r
        for r in "${RESULTS[@]}"; do  # the headline results, still on one line
            [[ $r == pytest:* || $r == train:* ]] && verdict+="; $r"
        done
    else
        verdict="GPU CHECK: FAIL: $(printf '%s; ' "${FAILED[@]}")"
        verdict=${verdict%; }
    fi
    [[ $MODE == fake ]] && verdict+=" [fake NVML: no GPU was checked]"
    verdict+=" ($(($(date +%s) - START))s; files in $OUT_DIR)"
    {
        echo "$verdict"
        echo
        printf '%s\n' "${RESULTS[@]}"
        echo
        machine
    } >"$OUT_DIR/summary.txt"
    rm -rf "$WORK"
    echo
    echo "$verdict"
    ((${#FAILED[@]} == 0))
}

main 2>&1 | tee "$OUT_DIR/check.log"
exit "${PIPESTATUS[0]}"
