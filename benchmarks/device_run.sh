#!/usr/bin/env bash
# Run the GPU benchmarks on a machine where the project is not installed, in one
# command, from the repository root, and leave the results in $OUT.
#
#   bash benchmarks/device_run.sh [all|gpu|curves|sharded] [quick]
#
# all (default): benchmarks/gpu_cycle.py, then benchmarks/camvid_curves.py with a
# deadline that keeps the whole command inside SEGAL_BUDGET_S seconds (default 560);
# gpu / curves: only one of them. sharded (issue 15, not part of all):
# benchmarks/score_sharded.py on 1 and on every GPU of the machine (torchrun, NCCL),
# into sharded.json. quick: the scripts' --quick settings (CPU,
# ../shared/data/camvid-mini), to check this script anywhere.
#
# Before: bash benchmarks/prepare_device.sh here (wheels in .whl/, data in .data/),
# then carry [".whl", ".data"]. The wheels of packages the machine lacks are
# installed into $SEGAL_SITE (default /tmp/site), and PYTHONPATH gets the repository
# and plugins/ (no pip install of the project: the scripts register the built-in
# plugins themselves when no entry point is found).
#
# Environment: OUT (results, default /tmp/segal-bench-out), SEGAL_DATA (default
# .data/camvid-jpg), SEGAL_DEVICE (default cuda), SEGAL_BUDGET_S, SEGAL_GPU_ARGS and
# SEGAL_CURVES_ARGS (extra arguments, word-split), PYTHON (default python3).
#
# Results in $OUT (8 files at most, none in sub-folders): gpu_cycle.json,
# gpu_cycle.log, curves.log, summary.json, summary.md, curves_mean.png, report.png,
# curves.tgz (every run's config.json, history.jsonl, log, and report.md/csv;
# no checkpoints).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
START=$(date +%s)

WHAT=${1:-all}
MODE=${2:-full}
case "$WHAT" in all|gpu|curves|sharded) ;; *) echo "usage: $0 [all|gpu|curves|sharded] [quick]" >&2; exit 2 ;; esac
case "$MODE" in full|quick) ;; *) echo "usage: $0 [all|gpu|curves|sharded] [quick]" >&2; exit 2 ;; esac

PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/segal-bench-out}
SITE=${SEGAL_SITE:-/tmp/site}
BUDGET=${SEGAL_BUDGET_S:-560}
WORK=$(mktemp -d /tmp/segal-bench.XXXXXX)
mkdir -p "$OUT"

# 1. the carried wheels whose distribution this Python does not have
missing=()
for whl in .whl/*.whl; do
    [ -e "$whl" ] || continue
    dist=$(basename "$whl" | cut -d- -f1)
    if ! "$PY" -c 'import importlib.metadata as m, sys; m.version(sys.argv[1])' "$dist" 2>/dev/null; then
        missing+=("$whl")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "${missing[@]}" || exit 3
fi
export PYTHONPATH="$SITE:$REPO:$REPO/plugins${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
"$PY" -c 'import segmentation_models_pytorch, pluggy, click, segal_core' || exit 3
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

if [ "$MODE" = quick ]; then
    COMMON=(--quick)
else
    COMMON=(--device "${SEGAL_DEVICE:-cuda}" --data "${SEGAL_DATA:-.data/camvid-jpg}")
fi
status=0

# 2. issue 9: the cycle at the card's speed
if [ "$WHAT" = all ] || [ "$WHAT" = gpu ]; then
    # shellcheck disable=SC2086
    "$PY" benchmarks/gpu_cycle.py "${COMMON[@]}" --json "$OUT/gpu_cycle.json" ${SEGAL_GPU_ARGS:-} \
        2>&1 | tee "$OUT/gpu_cycle.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi

# 3. issue 10: learning curves, stopped in time to report within the budget
if [ "$WHAT" = all ] || [ "$WHAT" = curves ]; then
    left=$(( BUDGET - ($(date +%s) - START) - 45 ))
    if [ "$left" -lt 60 ]; then
        echo "only ${left} s left of SEGAL_BUDGET_S=$BUDGET: curves skipped" | tee "$OUT/curves.log"
        status=1
    else
        # shellcheck disable=SC2086
        "$PY" benchmarks/camvid_curves.py "${COMMON[@]}" --out "$WORK/curves" --deadline-s "$left" \
            ${SEGAL_CURVES_ARGS:-} 2>&1 | tee "$OUT/curves.log"
        [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
        c="$WORK/curves"
        for f in summary.json summary.md curves_mean.png; do
            [ -f "$c/$f" ] && cp "$c/$f" "$OUT/"
        done
        [ -f "$c/report/report.png" ] && cp "$c/report/report.png" "$OUT/report.png"
        if [ -d "$c/runs" ]; then
            tar -czf "$OUT/curves.tgz" -C "$c" --exclude='*.safetensors' --exclude='*.tmp*' \
                runs logs jobs $( [ -d "$c/report" ] && echo report )
        fi
    fi
fi
# 4. issue 15: one pool scored by 1 process and by one process per GPU (sharded, top-K merge)
if [ "$WHAT" = sharded ]; then
    if [ "$MODE" = quick ]; then
        SHARDED=(--device cpu --nprocs 1,2 --pool 16 --image-size 64x64 --repeats 1)
    else
        gpus=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
        nprocs=1; [ "$gpus" -ge 2 ] && nprocs="1,$gpus"
        SHARDED=(--device cuda --nprocs "$nprocs" --pool 2048 --image-size 360x480 --batch-size 32 --repeats 3)
    fi
    # shellcheck disable=SC2086
    "$PY" benchmarks/score_sharded.py "${SHARDED[@]}" ${SEGAL_SHARDED_ARGS:-} 2>&1 | tee "$OUT/sharded.json"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
rm -rf "$WORK"
echo "device_run: $(( $(date +%s) - START )) s; results in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit $status
