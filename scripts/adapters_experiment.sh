#!/usr/bin/env bash
# The six-way adapter experiment of BENCHMARKS.md (issue #5), equal budget: 800 steps x batch 16 per method
# (the per-domain LoRAs split it: 400 steps each). Needs the corpus:
#   procseq data make --out data_cache/corpus --per-domain 2000 --test-per-domain 100
# Usage: scripts/adapters_experiment.sh train|eval [N per domain, default 50]
set -euo pipefail
OUT=runs/adapters-exp
STEPS=800
N=${2:-50}
P="procseq"

train() {
  $P train adapter adapters --output-dir $OUT/lora --max-steps $STEPS --set adapter.kind=lora
  $P train adapter adapters --output-dir $OUT/lora-clay --max-steps $((STEPS / 2)) \
     --set adapter.kind=lora --set adapter.name=clay --set "data.domains=[clay]"
  $P train adapter adapters --output-dir $OUT/lora-sand_art --max-steps $((STEPS / 2)) \
     --set adapter.kind=lora --set adapter.name=sand_art --set "data.domains=[sand_art]"
  $P train adapter adapters --output-dir $OUT/asymmetric --max-steps $STEPS
  $P train adapter adapters --output-dir $OUT/masked --max-steps $STEPS --set adapter.kind=masked
  $P train adapter adapters --output-dir $OUT/masked-align --max-steps $STEPS --set adapter.kind=masked \
     --set adapter.alignment.enabled=true
}

ev() {  # ev NAME DOMAINS [procseq eval options...]
  local name=$1 domains=$2; shift 2
  for split in test-seen test-compositional; do
    $P eval --model procseq-tiny --split $split --domains "$domains" --n $N --allow-unseen \
      --out $OUT/eval/$name/$split --overwrite "$@" > /dev/null
  done
}

evaluate() {
  local A=model/adapters.safetensors
  ev base clay,sand_art,origami
  ev lora clay,sand_art,origami --adapters $OUT/lora/$A --adapter-mix all=1
  ev lora-per-domain clay --adapters $OUT/lora-clay/$A
  ev lora-per-domain sand_art --adapters $OUT/lora-sand_art/$A --out-suffix sand_art
  ev lora-per-domain origami --adapters $OUT/lora-clay/$A --adapter-mix clay=1 --out-suffix origami
  ev asymmetric clay,sand_art,origami --adapters $OUT/asymmetric/$A
  ev masked clay,sand_art,origami --adapters $OUT/masked/$A
  ev masked-align clay,sand_art,origami --adapters $OUT/masked-align/$A
}

case "${1:-}" in
  train) train ;;
  eval) evaluate ;;
  *) echo "usage: $0 train|eval [N]" >&2; exit 2 ;;
esac
