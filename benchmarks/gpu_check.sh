#!/usr/bin/env bash
# GPU proof in one prepared run: minires's CUDA kernels on a real GPU.
#
#   benchmarks/gpu_check.sh stage                  on the development machine, before the GPU run:
#                                                  copy CIFAR-10 (JPEG archive + converter) into .data/
#   benchmarks/gpu_check.sh verify                 on the GPU machine: versions, `minires doctor`,
#                                                  every gpu-marked test, benchmarks/bench_gpu.py
#   benchmarks/gpu_check.sh train [--budget-minutes 8]
#                                                  on the GPU machine: ResNet-20 on CIFAR-10 until the
#                                                  budget runs out; when it first reached 91%
#
# Options: --dry-run (check everything that can be checked without a GPU and print the exact
# commands, running none of the GPU work), --data DIR (default .data), --from DIR (stage's
# source, default ../shared/data), --budget-minutes M (train's whole phase, default 8).
#
# Run from anywhere; it works in the repository root, uninstalled (PYTHONPATH=.), with the
# python3 on PATH (or $PYTHON). Everything it prints also goes to $OUT/PHASE.log when $OUT
# names a folder (the device tool copies $OUT back), else to runs/gpu-check/DATE-TIME/.
# Each phase stops itself well inside 9 minutes: every step runs under `timeout`.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

PYTHON=${PYTHON:-python3}
PYTEST_SECONDS=300    # all gpu-marked tests (about 580; the MNIST run on GPU and CPU is the longest)
BENCH_SECONDS=150     # the three tables of bench_gpu.py
DOCTOR_SECONDS=45     # NVRTC compiles every kernel file twice (float32, float64)
CONVERT_SECONDS=120   # decoding 60,000 JPEGs (about 20 s on one core)
LOAD_MARGIN=20        # seconds of the train budget kept for Python start-up, data loading and the plot

usage() {
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
}

fail() {  # one clear line, then stop
    echo "gpu_check: $*" >&2
    exit 2
}

dry_run=0 phase="" budget_minutes=8 data_dir=.data source_dir=../shared/data
while (($#)); do
    case "$1" in
        --dry-run) dry_run=1 ;;
        verify | train | stage)
            [[ -z "$phase" ]] || fail "give one phase, not '$phase' and '$1'"
            phase=$1 ;;
        --budget-minutes)
            [[ $# -ge 2 && "$2" =~ ^[0-9]+$ && "$2" -ge 1 && "$2" -le 9 ]] \
                || fail "--budget-minutes takes a whole number of minutes from 1 to 9 (a device command may run 10)"
            budget_minutes=$2; shift ;;
        --data)
            [[ $# -ge 2 ]] || fail "--data takes a folder"
            data_dir=$2; shift ;;
        --from)
            [[ $# -ge 2 ]] || fail "--from takes a folder"
            source_dir=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        *) fail "unknown argument '$1' (try --help)" ;;
    esac
    shift
done
[[ -n "$phase" ]] || fail "say which phase: verify, train or stage (try --help)"
if [[ "$phase" != train && "$budget_minutes" != 8 ]]; then
    fail "--budget-minutes belongs to the train phase"
fi
command -v "$PYTHON" >/dev/null || fail "no '$PYTHON' on PATH (set PYTHON=/path/to/python3)"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg

run() {  # print a command exactly as it will run (shell-quoted), then run it unless this is a dry run
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    ((dry_run)) && return 0
    "$@"
}

missing_modules() {  # the Python modules among "$@" that cannot be imported
    "$PYTHON" - "$@" <<'EOF'
import importlib, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception:
        print(name)
EOF
}

require_modules() {  # fail, naming them, when modules are missing; a dry run only notes a missing cupy
    local missing
    missing=$(missing_modules "$@" | tr '\n' ' ')
    if ((dry_run)) && [[ "$missing" == "cupy " ]]; then
        echo "note: cupy is missing here; the GPU machine has it (the real run needs it)"
    elif [[ -n "$missing" ]]; then
        fail "missing Python modules for '$PYTHON': $missing(the GPU machine is expected to have them installed)"
    fi
}

# ------------------------------------------------------------------ stage (development machine)
if [[ "$phase" == stage ]]; then
    for file in cifar10-jpeg.tar.gz prepare_cifar10.py; do
        [[ -f "$source_dir/$file" ]] || fail "$source_dir/$file not found (give the shared data folder with --from DIR)"
    done
    run mkdir -p "$data_dir"
    run cp "$source_dir/cifar10-jpeg.tar.gz" "$source_dir/prepare_cifar10.py" "$data_dir/"
    run chmod u+w "$data_dir/cifar10-jpeg.tar.gz" "$data_dir/prepare_cifar10.py"
    if ! ((dry_run)) && ! git check-ignore -q "$data_dir/cifar10-jpeg.tar.gz" 2>/dev/null; then
        echo "warning: $data_dir is not ignored by git; it must be ignored to travel with carry" >&2
    fi
    echo "staged: name '$data_dir' in the device tool's carry, then run: benchmarks/gpu_check.sh train"
    exit 0
fi

# ------------------------------------------------------------------ where the output goes
if [[ -n "${OUT:-}" && -d "${OUT:-}" ]]; then
    out_dir=$OUT
else
    out_dir=runs/gpu-check/$(date +%Y%m%d-%H%M%S)
    suffix=1
    while [[ -e "$out_dir" ]]; do out_dir=runs/gpu-check/$(date +%Y%m%d-%H%M%S)-$suffix; suffix=$((suffix + 1)); done
fi
mkdir -p "$out_dir" || fail "cannot create the output folder $out_dir"
log=$out_dir/$phase.log
((dry_run)) && log=$out_dir/$phase-dry-run.log
exec > >(tee -a "$log") 2> >(tee -a "$log" >&2)
phase_start=$SECONDS
echo "gpu_check $phase$( ((dry_run)) && echo ' (dry run)') at $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname); output in $out_dir"

show_gpus() {
    if command -v nvidia-smi >/dev/null; then
        run nvidia-smi -L
    else
        echo "note: nvidia-smi is not on PATH"
    fi
}

# ------------------------------------------------------------------ verify
if [[ "$phase" == verify ]]; then
    require_modules numpy cupy pytest matplotlib tqdm
    show_gpus
    status=0 report=""
    step() {  # run one step; remember whether it passed
        local name=$1
        shift
        run "$@"
        local rc=$?
        report+="$name: $( ((rc == 0)) && echo ok || echo "FAILED (exit $rc)"); "
        ((rc == 0)) || status=1
    }
    step doctor timeout -k 10 "$DOCTOR_SECONDS" "$PYTHON" -m minires doctor
    # MINIRES_REQUIRE_GPU=1 turns a skipped gpu test into a failure (tests/gpu_guard.py).
    step "gpu tests" env MINIRES_REQUIRE_GPU=1 timeout -k 10 "$PYTEST_SECONDS" \
        "$PYTHON" -m pytest -m gpu -q -rfEs -p no:cacheprovider tests
    if ((dry_run)); then  # the same selection, collected only: catches a typo without a GPU
        "$PYTHON" -m pytest -m gpu --collect-only -q -p no:cacheprovider tests | tail -n 1 \
            || fail "pytest could not collect the gpu tests"
    fi
    bench=(benchmarks/bench_gpu.py --repeats 20 --steps 20 --batches 128 512 --depths 20 56)
    if ((dry_run)); then
        "$PYTHON" "${bench[@]}" --dry-run || fail "benchmarks/bench_gpu.py rejects its settings"
    fi
    step benchmark timeout -k 10 "$BENCH_SECONDS" "$PYTHON" "${bench[@]}"
    if ((dry_run)); then
        echo "dry run: verify would take at most $((DOCTOR_SECONDS + PYTEST_SECONDS + BENCH_SECONDS + 30)) s"
        exit 0
    fi
    echo "verify: ${report}done in $((SECONDS - phase_start)) s"
    exit $status
fi

# ------------------------------------------------------------------ train
budget_seconds=$((budget_minutes * 60))
binary=$data_dir/cifar-10-batches-bin
have_binary=1
for file in data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin test_batch.bin; do
    [[ -f "$binary/$file" ]] || have_binary=0
done
if ((have_binary)); then
    echo "data: $binary (already converted)"
    require_modules numpy cupy matplotlib tqdm
else
    for file in cifar10-jpeg.tar.gz prepare_cifar10.py; do
        [[ -f "$data_dir/$file" ]] || fail "CIFAR-10 not found: $data_dir/$file is missing. On the development machine run" \
            "'benchmarks/gpu_check.sh stage' (it copies both files from ../shared/data) and name '$data_dir' in carry"
    done
    echo "data: $data_dir/cifar10-jpeg.tar.gz, to be converted into $binary"
    require_modules numpy cupy matplotlib tqdm PIL
fi
show_gpus
if ! ((have_binary)); then
    run timeout -k 10 "$CONVERT_SECONDS" "$PYTHON" "$data_dir/prepare_cifar10.py" "$data_dir" \
        || fail "converting the CIFAR-10 archive failed"
fi
left=$((budget_seconds - (SECONDS - phase_start) - LOAD_MARGIN))
((left >= 60)) || fail "only $left s of the $budget_seconds s budget are left for training"
((dry_run)) && echo "(the budget below shrinks by the seconds the conversion takes)"
train=(benchmarks/time_to_accuracy.py --data-root "$data_dir" --device cuda --budget-seconds "$left" --out "$out_dir")
if ((dry_run)); then
    "$PYTHON" "${train[@]}" --dry-run || fail "benchmarks/time_to_accuracy.py rejects its settings"
fi
run timeout -k 10 $((left + LOAD_MARGIN + 40)) "$PYTHON" "${train[@]}"
rc=$?
((dry_run)) || echo "train: exit $rc after $((SECONDS - phase_start)) s"
exit $rc
