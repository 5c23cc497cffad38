#!/usr/bin/env bash
# Retrain every LoRA procseq-tiny ships on the v2 base (issue 12), with the presets' own commands on the v2 corpus.
# This is how the shipped LoRAs were trained (session 6).
# Run after the v2 base is in src/procseq/embedded/procseq-tiny (the presets train over `procseq-tiny`; the
# LoRAs read prompts with the base's domain phrase on their own, procseq.training.run.prefix_flag).
# Two jobs at a time, one thread each (2-core machine); every run resumes from its newest checkpoint.
# Then copy each run's model/ into the embedded folder:
#   known_frames/ <- $R/known-frames-last/model     adapters/ <- $R/adapters/model
#   regional/     <- $R/regional/model              frame_by_frame/ <- $R/frame-by-frame/model
set -euo pipefail
V2=${V2:-$HOME/.cache/procseq/corpus-v2}
R=${R:-$HOME/.cache/procseq/runs/v2-loras}
KF_STEPS=${KF_STEPS:-1200}
export OMP_NUM_THREADS=1
mkdir -p "$R"
# ReCraft's LoRA: the condition LoRA with the last frame known, v1's recraft budget (1,200 steps x 32)
procseq train known-frames known_frames --set "data.dir=$V2" --set 'known_frames.subsets={last: 1.0}' \
    --max-steps "$KF_STEPS" --output-dir "$R/known-frames-last" > "$R/known-frames-last.log" 2>&1 &
# the two adapter domains (asymmetric LoRA, clay and sand_art): the preset's 800 steps x 16, then (shipped) resumed
# to 1,600 with the learning rate decaying to 0 over steps 801-1,600 (v2's text encoders spell clay's words letter
# by letter, and 800 steps scored 0.35 / 0.51 on held-out compositions, 1,600 steps 0.39 / 0.55: BENCHMARKS.md)
procseq train adapter adapters --set "data.dir=$V2" --output-dir "$R/adapters" > "$R/adapters.log" 2>&1 &
wait
procseq train adapter adapters --set "data.dir=$V2" --set optim.schedule=linear --set optim.decay_steps=800 \
    --max-steps 1600 --output-dir "$R/adapters" > "$R/adapters-1600.log" 2>&1
# regional mode's LoRA, 380 steps x 4 on 150 sequences per base domain
python -m procseq.training.regional --out "$R/regional" --data "$V2" --steps 380 --per-domain 150 --batch-size 4 \
    > "$R/regional.log" 2>&1 &
# frame by frame: LoRA + step embedding, 600 steps x 16
procseq train frame-by-frame frame_by_frame --set "data.dir=$V2" --output-dir "$R/frame-by-frame" \
    > "$R/frame-by-frame.log" 2>&1 &
wait
