#!/usr/bin/env bash
# Held-out real clips (the corpus clips reserved for validation, never Vid4), as a user's file:
# every other frame, BI x4, then the half-rate LR stream as one H.264 CRF 28 yuv420p video
# (x264 medium, 25 fps) -- and the same clean. ST-VSR full protocol (x4, x2 fps), first 19
# frames of each clip, Y-PSNR against the original frames; stvsr-bicubic is "bicubic + frame
# averaging". Writes out/heldout/*.json and prints one table.
#   bash benchmarks/compressed_heldout.sh [VAL_DIR] [MODELS...]
set -euo pipefail
cd "$(dirname "$0")/.."
VAL=${1:-out/val_clips}
shift || true
MODELS=${*:-stvsr-bicubic sfnet-s sfnet-s-compressed}
BIN=${BIN:-.venv/bin}
mkdir -p out/heldout
for deg in bi "bi+h264:crf=28"; do
  tag=$([ "$deg" = bi ] && echo clean || echo crf28)
  for m in $MODELS; do
    "$BIN/stvsr" eval --model "$m" --task stvsr --protocol full --data "$VAL" --max-frames 19 \
      --degradation "$deg" --json "out/heldout/${m}_${tag}.json" --quiet ${PRECISION:+--precision $PRECISION} > /dev/null
  done
done
"$BIN/python" - "$MODELS" <<'PY'
import json, sys
models = sys.argv[1].split()
print(f"{'model':<24}{'clean BI':>10}{'CRF 28':>10}   per clip (CRF 28)")
for m in models:
    r = {t: json.load(open(f"out/heldout/{m}_{t}.json")) for t in ("clean", "crf28")}
    clips = ", ".join(f"{k} {v['psnr_y']:.2f}" for k, v in r["crf28"]["clips"].items())
    print(f"{m:<24}{r['clean']['mean']['psnr_y']:>10.2f}{r['crf28']['mean']['psnr_y']:>10.2f}   {clips}")
PY
