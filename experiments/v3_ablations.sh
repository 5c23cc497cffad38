#!/usr/bin/env bash
# CookAnything's and Loom's ablations on a model folder that learnt every layout (issue 26), one process at a time:
# test-compositional of the v2 corpus, the first N records per base domain, the call and seeds of
# `procseq eval --mode`; OUT/regional/paired.md and OUT/frame-by-frame/results.md hold each variant's paired
# difference to the default with its 95 % bootstrap interval.
# Usage: experiments/v3_ablations.sh MODEL OUT [N regional, default 10] [N frame by frame, default 6]
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=1
MODEL=$1
OUT=$2
NR=${3:-10}
NF=${4:-6}
DATA=${DATA:-$HOME/.cache/procseq/corpus-v2}
mkdir -p "$OUT"
python -m experiments.regional --model "$MODEL" --data "$DATA" --split test-compositional --n "$NR" \
    --captions plan --out "$OUT/regional" --default default \
    --variant default=regional --variant grid-ids=regional:ids=grid --variant fusion-0=regional:fusion=0 \
    --variant fusion-0.5=regional:fusion=0.5 --variant no-mask=regional:mask=0 --variant blend-0=regional:blend=0
python -m experiments.frame_by_frame ablation --model "$MODEL" --data "$DATA" --split test-compositional \
    --n "$NF" --out "$OUT/frame-by-frame" --variants "default (sparse history),all earlier frames,previous frame only,no step embedding,plan text only,no plan text"
