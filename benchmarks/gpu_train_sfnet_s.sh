#!/usr/bin/env bash
# Train sfnet-s (v2) on one GPU in a short window, on a bare machine with PyTorch but no PyAV
# and no network. Needs .gpu_pack/ (python benchmarks/gpu_pack.py, carried with the working
# tree). Writes the trained heads (EMA), the training logs and the corpus manifest to $OUT (or
# out/gpu).
#   bash benchmarks/gpu_train_sfnet_s.sh [MINUTES] [extra --set options for stvsr train]
# The frozen-store bank (docs/training.md) takes the data loader off the critical path:
#   bash benchmarks/gpu_train_sfnet_s.sh 10 --set bank.enabled=true --set data.num_workers=0 \
#     --set train.precision=bf16      (the pack already continues from the shipped head)
# ABLATIONS=1 trains, at the same time on the same GPU, the DF-off and RIFE-motion variants
# too (each run then gets a third of the data workers). Measured on an H200 (2026-11-28): the
# data pipeline (PNG decoding + MATLAB-bicubic degradation on the CPU workers) bounds the
# speed at ~0.45-0.5 s/step for three runs at batch 16, not the GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
MIN=${1:-6}
shift || true
PY=${PYTHON:-python3}
DEST=${OUT:-out/gpu}
PACK=${PACK:-.gpu_pack}          # what benchmarks/gpu_pack.py wrote
WORK=${WORK:-out}                # corpus and runs go here
CLIPS=${CLIPS_PER_STILL:-12}
mkdir -p "$DEST"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
t0=$(date +%s)
mkdir -p "$WORK/train"
STVSR_CACHE="$PACK/cache" $PY -m stvsr data prepare "$WORK/corpus_gpu" --shared "$PACK/shared" \
  --no-videos --no-photo-packages --photo-dir "$PACK/cache/photos" --clips-per-still "$CLIPS" \
  --quiet
echo "corpus ready in $(( $(date +%s) - t0 )) s"
# the carried parts name the packaged head (tracked, so not carried twice): add it here
$PY benchmarks/gpu_pack.py --with-head "$PACK/sfnet_s_parts.safetensors" "$WORK/sfnet_s_init.safetensors"

run() {  # run NAME [--set ...]
  local name=$1
  shift
  $PY -m stvsr train configs/sfnet_s_gpu.yaml --set train.max_minutes="$MIN" \
    --set model.init="$WORK/sfnet_s_init.safetensors" --set data.root="$WORK/corpus_gpu" \
    --set train.out_dir="$WORK/train/$name" "$@" >"$WORK/train/$name.log" 2>&1 \
    || echo "run $name failed"
}
if [ "${ABLATIONS:-0}" = 1 ]; then
  run sfnet_s_gpu --set data.num_workers=5 "$@" &
  run sfnet_s_gpu_nodf --set data.num_workers=5 --set model.overrides.use_df=false "$@" &
  run sfnet_s_gpu_rife --set data.num_workers=5 --set model.overrides.use_rife=true "$@" &
  wait
else
  run sfnet_s_gpu "$@"
fi

for log in "$WORK"/train/sfnet_s_gpu*.log; do echo "== $log"; grep -v "UserWarning\|worker_number" "$log" | tail -n 8; done

$PY - "$DEST" "$WORK" <<'PYEOF'
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

dest, work = Path(sys.argv[1]), Path(sys.argv[2])
for run in sorted(p for p in (work / "train").glob("sfnet_s_gpu*") if p.is_dir()):
    src = run / "model_ema.safetensors"
    if not src.is_file():
        print(f"{run.name}: no model_ema.safetensors")
        continue
    state = load_file(str(src))
    head = {k: v.contiguous() for k, v in state.items() if k.startswith("head.")}
    save_file(head, str(dest / f"{run.name}_head.safetensors"), {"source": src.name})
    print(f"{run.name}: head {len(head)} tensors")
# one text file with every run's log and loss table (the device tool returns few files)
with open(dest / "train_logs.txt", "w") as out:
    for run in sorted(p for p in (work / "train").glob("sfnet_s_gpu*") if p.is_dir()):
        for f in (Path(f"{run}.log"), run / "train_log.csv"):
            if f.is_file():
                out.write(f"===== {f}\n{f.read_text()}\n")
PYEOF
# each run's ledger row (steps, samples, device, minutes, validation curve), for the model's
# ledger in docs/models/ once the results are brought back
for run in "$WORK"/train/sfnet_s_gpu*/; do
  [ -f "$run/train_log.csv" ] && $PY -m stvsr ledger "$run" --ledger "$DEST/ledger_rows.csv" \
    --note "benchmarks/gpu_train_sfnet_s.sh $MIN min $*" || true
done
echo "total $(( $(date +%s) - t0 )) s"
