#!/usr/bin/env bash
# The adapter experiment of BENCHMARKS.md: the six ways of issue #5 plus the options of issue #15
# (ProcessMaker's output-row mask, fixed and learned; MakeAnything's frozen shared A), equal budget per
# method: STEPS steps x batch 16 (the per-domain LoRAs split it). Needs the corpus:
#   procseq data make --out data_cache/corpus --per-domain 2000 --test-per-domain 100
# and, for 200 test sequences per domain and split, a second copy with bigger test splits (same seed,
# same training data and held-out combinations):
#   procseq data make --out runs/corpus200 --per-domain 2000 --test-per-domain 200
# Usage: experiments/adapters_experiment.sh train [METHOD...]     (default: every method, one at a time)
#        experiments/adapters_experiment.sh eval N DOMAINS [METHOD...]  (python -m experiments.adapters; N per domain
#                                                              and split, DOMAINS e.g. clay,sand_art)
#        experiments/adapters_experiment.sh table                 (the BENCHMARKS.md tables with 95% intervals)
# Environment: STEPS (default 100), OUT (default runs/adapters-exp2), DATA (default runs/corpus200).
# Training resumes from the newest checkpoint; an evaluation keeps the scores it already has.
# The first version of this experiment (issue #5, 800 steps, n = 50) is `git show 6d31901:scripts/adapters_experiment.sh`.
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"   # python -m experiments.X from any folder
OUT=${OUT:-runs/adapters-exp2}
STEPS=${STEPS:-100}
DATA=${DATA:-runs/corpus200}
P="procseq"
METHODS=(lora masked-rows masked-rows-learned masked asymmetric asymmetric-frozen-a lora-clay lora-sand_art masked-align)

train_one() {
  local m=$1 t="$P train adapter adapters --output-dir $OUT/$1"
  case $m in
    lora) $t --max-steps "$STEPS" --set adapter.kind=lora ;;
    lora-clay|lora-sand_art) $t --max-steps $((STEPS / 2)) --set adapter.kind=lora --set "adapter.name=${m#lora-}" \
        --set "data.domains=[${m#lora-}]" ;;
    asymmetric) $t --max-steps "$STEPS" ;;
    asymmetric-frozen-a) $t --max-steps "$STEPS" --set adapter.freeze_a=true ;;
    masked) $t --max-steps "$STEPS" --set adapter.kind=masked ;;
    masked-align) $t --max-steps "$STEPS" --set adapter.kind=masked --set adapter.alignment.enabled=true ;;
    masked-rows) $t --max-steps "$STEPS" --set adapter.kind=masked --set adapter.mask=rows ;;
    masked-rows-learned) $t --max-steps "$STEPS" --set adapter.kind=masked --set adapter.mask=rows \
        --set adapter.row_mask=learned ;;
    *) echo "unknown method $m" >&2; exit 2 ;;
  esac
}

case "${1:-}" in
  train) shift; for m in "${@:-${METHODS[@]}}"; do train_one "$m"; done ;;
  eval) N=${2:?N per domain and split}; D=${3:?domains}; shift 3
        python -m experiments.adapters run --runs "$OUT" --data "$DATA" --n "$N" --domains "$D" \
          ${1:+--methods "$(IFS=,; echo "$*")"} ;;
  table) python -m experiments.adapters table --runs "$OUT" ;;
  *) echo "usage: $0 train [METHOD...] | eval N DOMAINS [METHOD...] | table" >&2; exit 2 ;;
esac
