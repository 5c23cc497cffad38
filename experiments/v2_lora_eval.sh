#!/usr/bin/env bash
# The LoRAs a procseq-tiny folder ships, measured as BENCHMARKS' sections measure them (issue 12: "every figure
# describes what ships"). The records come from v1's corpus (data_cache/corpus: 9 and 4 frames), so a v1 folder and
# a v2 folder are scored on the same sequences with the same seeds.
# Usage: experiments/v2_lora_eval.sh [MODEL] [OUT]   (defaults: procseq-tiny, ~/.cache/procseq/eval/loras)
# Two jobs at a time, one thread each (2-core machine). Each job writes a markdown table into its folder and its
# output into OUT/<job>.log.
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"   # python -m experiments.X from any folder
MODEL=${1:-procseq-tiny}
OUT=${2:-$HOME/.cache/procseq/eval/loras}
N=${N:-10}
V1=${V1:-data_cache/corpus}
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
# the adapter domains through the shipped asymmetric LoRA (issue 5): held-out compositions
procseq eval --model "$MODEL" --domains clay,sand_art --data "$V1" --split test-compositional --n 20 --overwrite \
    --out "$OUT/adapters" > "$OUT/adapters.log" 2>&1 &
# known frames (issue 11): ReCraft through the shipped condition LoRA (its default), continuation and interpolation
# in place without a LoRA (theirs)
python -m experiments.known_frames --model "$MODEL" --data "$V1" --out "$OUT/known" --n "$N" \
    --variant shipped=concat:default --variant inplace=inplace:none > "$OUT/known.log" 2>&1 &
wait
# regional mode (issue 13), with and without the shipped regional LoRA, beside the grid
python -m experiments.regional --model "$MODEL" --data "$V1" --out "$OUT/regional" --n "$N" --variant grid=grid \
    --variant regional-trained=regional:lora=shipped > "$OUT/regional.log" 2>&1 &
# frame by frame (issue 14) beside the grid and regional, the same specs
python -m experiments.frame_by_frame compare --model "$MODEL" --out "$OUT/fbf" --n 2 --lengths 4,9,12,16 > "$OUT/fbf.log" 2>&1 &
wait
