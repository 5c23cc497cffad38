#!/usr/bin/env bash
# procseq-tiny v3 on a GPU machine with no network (issue 26): installs the carried wheels (diffusers and what it
# needs beyond the machine's torch / transformers / peft / accelerate), renders the v2 corpus (all cores; file for
# file the corpus of `procseq data make` here), then runs `procseq train base tiny-v3-gpu` from the shipped v2 with
# any extra options given (e.g. --max-steps 1000 --set train.output_dir=$OUT/run). Resumes from its newest
# checkpoint when run again with the same output folder.
# Run from the repository root:  bash experiments/gpu_v3.sh [procseq train base options...]
# Env: WHL (wheel folder, default .device/whl), CORPUS (default /tmp/corpus-v2).
set -euo pipefail
source "$(dirname "$0")/gpu_setup.sh"
python3 -m procseq.cli train base tiny-v3-gpu --set "data.dir=$CORPUS" --set "layouts.cache_dir=/tmp/frames" "$@"
