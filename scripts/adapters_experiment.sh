#!/usr/bin/env bash
# The six-way adapter experiment of BENCHMARKS.md (issue #5), equal budget: 800 steps x batch 16 per method
# (the per-domain LoRAs split it: 400 steps each). Needs the corpus:
#   procseq data make --out data_cache/corpus --per-domain 2000 --test-per-domain 100
# Usage: scripts/adapters_experiment.sh train|eval|balanced [N per domain and split, default 50]
#   balanced: the follow-up with domain-balanced batches (data.balance_domains) for one LoRA and the
#   asymmetric LoRA, trained and evaluated
#   then: python scripts/adapters_table.py   (the tables of BENCHMARKS.md)
# Both steps skip what is already done (training resumes; an evaluation with a report.json is kept).
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

ev() {  # ev NAME DOMAINS --adapters FILE|none [more procseq eval options]
  local name=$1 domains=$2 file=$4
  shift 2
  if [[ $file != none && ! -f $file ]]; then echo "skip $name: no $file yet"; return; fi
  for split in test-seen test-compositional; do
    if [[ -f $OUT/eval/$name/$split/report.json ]]; then continue; fi
    $P eval --model procseq-tiny --split $split --domains "$domains" --n $N --allow-unseen --true-cfg-scale 1 \
      --out $OUT/eval/$name/$split "$@" > /dev/null
    echo "evaluated $name on $split"
  done
}

evaluate() {
  local A=model/adapters.safetensors
  ev base clay,sand_art,origami --adapters none
  ev lora clay,sand_art,origami --adapters $OUT/lora/$A --adapter-mix all=1
  ev lora-per-domain/clay clay --adapters $OUT/lora-clay/$A
  ev lora-per-domain/sand_art sand_art --adapters $OUT/lora-sand_art/$A
  ev lora-per-domain/origami origami --adapters $OUT/lora-clay/$A --adapter-mix clay=1  # no origami LoRA: clay's
  ev asymmetric clay,sand_art,origami --adapters $OUT/asymmetric/$A  # origami: unrouted = the base
  ev asymmetric-mix origami --adapters $OUT/asymmetric/$A --adapter-mix clay=0.5,sand_art=0.5
  ev masked clay,sand_art,origami --adapters $OUT/masked/$A  # origami: the shared rows only
  ev masked-align clay,sand_art,origami --adapters $OUT/masked-align/$A
}

balanced() {
  local A=model/adapters.safetensors
  $P train adapter adapters --output-dir $OUT/lora-balanced --max-steps $STEPS --set adapter.kind=lora \
     --set data.balance_domains=true
  $P train adapter adapters --output-dir $OUT/asymmetric-balanced --max-steps $STEPS --set data.balance_domains=true
  ev lora-balanced clay,sand_art --adapters $OUT/lora-balanced/$A --adapter-mix all=1
  ev asymmetric-balanced clay,sand_art --adapters $OUT/asymmetric-balanced/$A
}

case "${1:-}" in
  train) train ;;
  eval) evaluate ;;
  balanced) balanced ;;
  *) echo "usage: $0 train|eval|balanced [N]" >&2; exit 2 ;;
esac
