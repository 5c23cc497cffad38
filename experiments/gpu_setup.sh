# Sourced by the GPU scripts (gpu_v2.sh, gpu_v3.sh) on a machine with no network: installs the carried wheels into
# /tmp/site, puts them and src/ on PYTHONPATH, and renders the v2 corpus into $CORPUS unless it is there (all cores;
# file for file the corpus of `procseq data make` here). Env: WHL (default .device/whl), CORPUS (default /tmp/corpus-v2).
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
