#!/usr/bin/env bash
# Every layout of a model folder on held-out specs, as issue 26 compares procseq-tiny v3 candidates with v2:
# `procseq eval --mode MODE` on test-compositional of the v2 corpus (the planner's captions, default sampling).
# Usage: experiments/v3_eval.sh MODEL OUT [N per domain, default 10] [LAYOUTS, default "grid regional frame-by-frame"]
# Two jobs at a time, one thread each (2-core machine); each layout writes OUT/LAYOUT/report.{md,json}; the last
# line prints attribute / step accuracy per layout (python -m experiments.v3_summary OUT).
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
MODEL=$1
OUT=$2
N=${3:-10}
LAYOUTS=${4:-grid regional frame-by-frame}
DATA=${DATA:-$HOME/.cache/procseq/corpus-v2}
SPLIT=${SPLIT:-test-compositional}
JOBS=${JOBS:-2}
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
for mode in $LAYOUTS; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 2; done
    python -m procseq.cli eval --model "$MODEL" --data "$DATA" --split "$SPLIT" --n "$N" --mode "$mode" \
        --overwrite --out "$OUT/$mode" > "$OUT/$mode.log" 2>&1 &
done
wait
python -m experiments.v3_summary "$OUT"
