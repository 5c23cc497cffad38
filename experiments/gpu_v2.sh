#!/usr/bin/env bash
# procseq-tiny v2 on a GPU machine with no network (issue 12): installs the carried wheels, renders the v2
# corpus (all cores; file for file the corpus of `procseq data make` here), then runs `procseq train
# tiny-v2-gpu` from the carried step-8,000 base with any extra options given.
# Run from the repository root:  bash experiments/gpu_v2.sh [procseq train options...]
# Env: WHL (wheel folder, default .device/whl), BASE (base model folder, default .device/base8000),
#      CORPUS (default /tmp/corpus-v2).
set -euo pipefail
WHL=${WHL:-.device/whl}
BASE=${BASE:-.device/base8000}
CORPUS=${CORPUS:-/tmp/corpus-v2}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHL"/*.whl
export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1
if [ ! -f "$CORPUS/manifest.json" ]; then
  start=$(date +%s)
  python3 -m procseq.cli data make --out "$CORPUS" --per-domain 2000 --test-per-domain 100 --lengths any \
    --wording paraphrase --phrasings 3 --workers "$(nproc)" > /tmp/corpus.log 2>&1 || { tail -5 /tmp/corpus.log; exit 1; }
  echo "corpus: $(( $(date +%s) - start )) s"
fi
md5sum "$CORPUS/train/metadata.jsonl"
python3 -m procseq.cli train tiny-v2-gpu --set "data.dir=$CORPUS" --set "model.path=$PWD/$BASE" "$@"
