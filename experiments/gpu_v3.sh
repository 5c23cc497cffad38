#!/usr/bin/env bash
# procseq-tiny v3 on a GPU machine with no network (issue 26): installs the carried wheels (diffusers and what it
# needs beyond the machine's torch / transformers / peft / accelerate), renders the v2 corpus (all cores; file for
# file the corpus of `procseq data make` here), then runs `procseq train base tiny-v3-gpu` from the shipped v2 with
# any extra options given (e.g. --max-steps 1000 --set train.output_dir=$OUT/run). Resumes from its newest
# checkpoint when run again with the same output folder.
# Run from the repository root:  bash experiments/gpu_v3.sh [procseq train base options...]
# Env: WHL (wheel folder, default .device/whl), CORPUS (default /tmp/corpus-v2).
set -euo pipefail
WHL=${WHL:-.device/whl}
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
python3 -m procseq.cli train base tiny-v3-gpu --set "data.dir=$CORPUS" --set "layouts.cache_dir=/tmp/frames" "$@"
