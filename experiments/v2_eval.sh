#!/usr/bin/env bash
# Issue #12's targets, measured on a v2 model: every figure of BENCHMARKS.md "Quality per layout".
# Needs both corpora:
#   procseq data make --out data_cache/corpus --per-domain 2000 --test-per-domain 100        (v1, for the v1 comparison)
#   procseq data make --out ~/.cache/procseq/corpus-v2 --per-domain 2000 --test-per-domain 100 \
#       --lengths any --wording paraphrase --phrasings 3
# Usage: experiments/v2_eval.sh [MODEL] [OUT]   (defaults: procseq-tiny, ~/.cache/procseq/eval/v2)
# Two jobs at a time, one thread each (2-core machine); default sampling (the model's steps and true CFG).
# Then: python experiments/v2_summary.py OUT   (the tables, per length and per domain)
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"   # python -m experiments.X from any folder
MODEL=${1:-procseq-tiny}
OUT=${2:-$HOME/.cache/procseq/eval/v2}
V1=${V1:-data_cache/corpus}
V2=${V2:-$HOME/.cache/procseq/corpus-v2}
N=${N:-30}
BASE=painting,line_drawing,lego,pixel_art,cooking,emoji
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
ev() { procseq eval --model "$MODEL" --n "$N" --overwrite "$@" > /dev/null; }

ev --data "$V1" --split test-compositional --out "$OUT/v1-test-compositional" &
ev --data "$V2" --split test-compositional --out "$OUT/test-compositional" &
wait
ev --data "$V2" --split test-paraphrase --out "$OUT/test-paraphrase" &
ev --data "$V2" --split test-length --domains painting,line_drawing,lego,pixel_art --out "$OUT/test-length" &
wait
python -m experiments.domain --model "$MODEL" --data "$V2" --n 20 --domains "$BASE" --out "$OUT/domain" > "$OUT/domain.txt" &
procseq eval --baseline retrieval --data "$V2" --split test-paraphrase --n "$N" --domains "$BASE" --overwrite \
    --out "$OUT/retrieval-test-paraphrase" > /dev/null &
wait
# the sampler: the model's default (6 Euler steps) vs 20 steps on the same records
ev --data "$V2" --split test-compositional --n 10 --steps 20 --out "$OUT/steps20-n10" &
ev --data "$V2" --split test-compositional --n 10 --out "$OUT/steps-default-n10" &
wait
procseq bench --model "$MODEL" --frames 9 --runs 10 --threads 2 > "$OUT/bench.txt"   # the 2-core figure
du -sh "$(python -c "from procseq.models.loading import resolve_model; print(resolve_model('$MODEL'))")" > "$OUT/size.txt"
