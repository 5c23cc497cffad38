#!/usr/bin/env bash
# procseq-tiny v2 on a GPU machine with no network (issue 12): installs the carried wheels, renders the v2
# corpus (all cores; file for file the corpus of `procseq data make` here), then runs `procseq train
# tiny-v2-gpu` from the carried step-8,000 base with any extra options given.
# Run from the repository root:  bash experiments/gpu_v2.sh [procseq train options...]
# Env: WHL (wheel folder, default .device/whl), BASE (base model folder, default .device/base8000),
#      CORPUS (default /tmp/corpus-v2).
set -euo pipefail
BASE=${BASE:-.device/base8000}
source "$(dirname "$0")/gpu_setup.sh"
python3 -m procseq.cli train tiny-v2-gpu --set "data.dir=$CORPUS" --set "model.path=$PWD/$BASE" "$@"
