#!/usr/bin/env bash
# Train basicvsr-compressed-bd's recipe on one GPU in a short window, on a bare machine with
# PyTorch but no PyAV and no network (configs/basicvsr_compressed_bd_gpu.yaml). Needs
# .gpu_pack_compressed/ (python benchmarks/gpu_pack.py --recipe basicvsr-compressed, carried
# with the working tree). Writes to $OUT (or out/gpu): the EMA weights as an fp16 difference to
# the carried bf16 start, the shipped basicvsr-compressed-bd (basicvsr_compressed_bd_gpu_delta.safetensors,
# ~12.6 MB), the logs and
# the run's ledger row.
#   bash benchmarks/gpu_train_basicvsr_compressed.sh [MINUTES] [extra options for stvsr train]
# Back here: python benchmarks/gpu_pack.py --unpack $OUT/basicvsr_compressed_bd_gpu_delta.safetensors
#   out/gpu_bd/model_ema.safetensors, then validate and ship (docs/models/basicvsr-compressed.md).
set -euo pipefail
cd "$(dirname "$0")/.."
MIN=${1:-10}
shift || true
PY=${PYTHON:-python3}
DEST=${OUT:-out/gpu}
PACK=${PACK:-.gpu_pack_compressed}   # what benchmarks/gpu_pack.py --recipe basicvsr-compressed wrote
WORK=${WORK:-out}
CLIPS=${CLIPS_PER_STILL:-4}           # as given to gpu_pack.py: the variants are of this corpus
RUN="$WORK/train/basicvsr_compressed_bd_gpu"
mkdir -p "$DEST" "$WORK/train"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
t0=$(date +%s)
STVSR_CACHE="$PACK/cache" $PY -m stvsr data prepare "$WORK/corpus_gpu_compressed" \
  --shared "$PACK/shared" --no-videos --no-photo-packages --photo-dir "$PACK/cache/photos" \
  --clips-per-still "$CLIPS" --quiet
echo "corpus ready in $(( $(date +%s) - t0 )) s"

$PY -m stvsr train configs/basicvsr_compressed_bd_gpu.yaml --set train.max_minutes="$MIN" \
  --set model.init="$PACK/basicvsr_compressed_bd_bf16.safetensors" \
  --set data.root="$WORK/corpus_gpu_compressed" --set data.variants_dir="$PACK/variants" \
  --set train.out_dir="$RUN" "$@" >"$RUN.log" 2>&1 || echo "run failed"
grep -v "UserWarning" "$RUN.log" | tail -n 8

$PY benchmarks/gpu_pack.py --export "$RUN/model_ema.safetensors" \
  "$PACK/basicvsr_compressed_bd_bf16.safetensors" "$DEST/basicvsr_compressed_bd_gpu_delta.safetensors"
# one text file with the log and the loss table (the device tool returns few files)
for f in "$RUN.log" "$RUN/train_log.csv"; do echo "===== $f"; cat "$f"; done >"$DEST/train_logs.txt"
$PY -m stvsr ledger "$RUN" --ledger "$DEST/ledger_rows.csv" \
  --note "benchmarks/gpu_train_basicvsr_compressed.sh $MIN min $*"
echo "total $(( $(date +%s) - t0 )) s"
