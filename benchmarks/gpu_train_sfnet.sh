#!/usr/bin/env bash
# Train the paper-design sfnet (configs/sfnet_gpu.yaml) on one GPU in a short window, on a bare
# machine with PyTorch but no PyAV and no network, continuing the CPU runs. Needs
# .gpu_pack_sfnet/ (python benchmarks/gpu_pack.py --recipe sfnet, carried with the working
# tree). Writes to $OUT (or out/gpu): the EMA and raw weights in fp16
# (sfnet_gpu_{ema,raw}_fp16.safetensors, 8.3 MB each), the logs and the run's ledger row.
#   bash benchmarks/gpu_train_sfnet.sh [MINUTES] [extra options for stvsr train]
set -euo pipefail
cd "$(dirname "$0")/.."
MIN=${1:-11}
shift || true
PY=${PYTHON:-python3}
DEST=${OUT:-out/gpu}
PACK=${PACK:-.gpu_pack_sfnet}   # what benchmarks/gpu_pack.py --recipe sfnet wrote
WORK=${WORK:-out}
CLIPS=${CLIPS_PER_STILL:-12}
RUN="$WORK/train/sfnet_gpu"
mkdir -p "$DEST" "$WORK/train"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
t0=$(date +%s)
STVSR_CACHE="$PACK/cache" $PY -m stvsr data prepare "$WORK/corpus_gpu_sfnet" --shared "$PACK/shared" \
  --no-videos --no-photo-packages --photo-dir "$PACK/cache/photos" --clips-per-still "$CLIPS" \
  --quiet
echo "corpus ready in $(( $(date +%s) - t0 )) s"

$PY -m stvsr train configs/sfnet_gpu.yaml --set train.max_minutes="$MIN" \
  --set model.init="$PACK/sfnet_start_bf16.safetensors" --set data.root="$WORK/corpus_gpu_sfnet" \
  --set train.out_dir="$RUN" "$@" >"$RUN.log" 2>&1 || echo "run failed"
grep -v "UserWarning" "$RUN.log" | tail -n 8

for kind in ema raw; do
  src="$RUN/model_$kind.safetensors"
  [ "$kind" = raw ] && src="$RUN/model.safetensors"
  $PY benchmarks/gpu_pack.py --half "$src" "$DEST/sfnet_gpu_${kind}_fp16.safetensors"
done
# one text file with the log and the loss table (the device tool returns few files)
for f in "$RUN.log" "$RUN/train_log.csv"; do echo "===== $f"; cat "$f"; done >"$DEST/train_logs.txt"
$PY -m stvsr ledger "$RUN" --ledger "$DEST/ledger_rows.csv" \
  --note "benchmarks/gpu_train_sfnet.sh $MIN min $*"
echo "total $(( $(date +%s) - t0 )) s"
