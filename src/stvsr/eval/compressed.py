"""The compressed-VSR protocol (COMISR / FTVSR / CAVSR): S-VSR ×4 of H.264-encoded LR video.

*Facts* from the papers' public code and CAVSR's poster (``docs/evaluation.md`` has the
sources): Vid4 LR is BD ×4 (Gaussian σ 1.6, 12 taps, every 4th pixel from the 2nd: our ``bd``);
the LR frames are written as a video with FFmpeg ``libx264 -crf {15, 25, 35}`` with no preset
(x264's ``medium``) and no pixel format (FFmpeg picks ``yuv444p`` for RGB PNG input), then
decoded back to frames; scored on Y, no border crop, mean of clip means.

*Ours* where the sources are silent or differ: 10 fps (COMISR's README command; rate control
depends on the frame rate); one encoding at the CRF directly (COMISR first writes a lossless
``-crf 0`` video and re-encodes it: in yuv444p both routes convert RGB to YUV once, so the
frames the CRF encoder sees are the same); x264 single-threaded (see :mod:`stvsr.data.codecs`).

As data: the S-VSR protocol (:func:`stvsr.eval.protocols.svsr_runs`) under the degradation
:data:`CHAIN` at each of :data:`CRFS`, beside the published rows :data:`PUBLISHED`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from stvsr.eval.runner import evaluate_svsr

__all__ = ["CHAIN", "CRFS", "PUBLISHED", "compressed_chain", "evaluate_compressed",
           "format_compressed"]

CRFS = (15, 25, 35)
CHAIN = "bd+h264:crf={crf},preset=medium,pix_fmt=yuv444p,fps=10"  # the degradation at a CRF

# Vid4 Y-PSNR / SSIM at CRF 15 / 25 / 35 (CAVSR's poster, CVPR 2023); facts, never outputs.
PUBLISHED: dict[str, tuple[tuple[float, float], ...]] = {
    "EDVR": ((26.53, 0.794), (24.76, 0.694), (22.39, 0.544)),
    "RealBasicVSR": ((26.94, 0.813), (24.87, 0.701), (22.39, 0.531)),
    "COMISR": ((26.66, 0.801), (25.14, 0.713), (22.62, 0.546)),
    "FTVSR": ((27.50, 0.826), (25.51, 0.732), (22.79, 0.561)),
    "CAVSR": ((27.42, 0.833), (25.65, 0.742), (22.84, 0.574)),
}


def compressed_chain(crf: int) -> str:
    """The protocol's degradation at ``crf`` as a chain (:mod:`stvsr.data.chain`)."""
    return CHAIN.format(crf=int(crf))


def evaluate_compressed(model: nn.Module, data: str | Path, *, crfs: tuple[int, ...] = CRFS,
                        **kwargs: Any) -> dict[str, Any]:
    """Score ``model`` on ``data`` (e.g. ``Vid4/GT``) at each CRF; ``kwargs`` go to
    :func:`~stvsr.eval.runner.evaluate_svsr` (device, precision, out_dir, ...).

    Returns ``{"model", "task": "svsr", "protocol": "compressed", "crfs", "runs": {"15":
    S-VSR result, ...}, "mean": {"15": {psnr_y, ssim_y, ...}, ...}}``.
    """
    out_dir = kwargs.pop("out_dir", None)
    runs: dict[str, dict[str, Any]] = {}
    for crf in crfs:
        sub = None if out_dir is None else Path(out_dir) / f"crf{int(crf)}"
        runs[str(int(crf))] = evaluate_svsr(model, data, degradation=compressed_chain(crf),
                                            out_dir=sub, **kwargs)
    first = next(iter(runs.values()))
    return {"model": first["model"], "weights": first.get("weights"), "task": "svsr",
            "protocol": "compressed", "crfs": [int(c) for c in crfs], "data": str(data),
            "runs": runs, "mean": {k: r["mean"] for k, r in runs.items()},
            "seconds": round(sum(r["seconds"] for r in runs.values()), 2)}


def format_compressed(results: list[dict[str, Any]]) -> str:
    """The published rows and ``results`` (each from :func:`evaluate_compressed`) as one
    table of Y-PSNR / SSIM per CRF, with per-clip PSNR of our rows below."""
    crfs = sorted({c for r in results for c in r["crfs"]} or set(CRFS))
    head = f"{'method':<34}" + "".join(f"{'CRF ' + str(c):>16}" for c in crfs)
    lines = ["Vid4, BD x4 + x264 (Y, no crop; published rows from CAVSR's poster)", head]
    for name, row in PUBLISHED.items():
        cells = [f"{p:.2f} / {s:.3f}" for c, (p, s) in zip(CRFS, row, strict=True) if c in crfs]
        lines.append(f"{name + ' (published)':<34}" + "".join(f"{c:>16}" for c in cells))
    for r in results:
        cells = []
        for c in crfs:
            m = r["mean"].get(str(c))
            cells.append("-" if m is None else f"{m['psnr_y']:.2f} / {m['ssim_y']:.3f}")
        lines.append(f"{r['model'] + ' (stvsr)':<34}" + "".join(f"{c:>16}" for c in cells))
    for r in results:
        for c in crfs:
            run = r["runs"].get(str(c))
            if run is not None:
                clips = ", ".join(f"{n} {m['psnr_y']:.2f}" for n, m in run["clips"].items())
                lines.append(f"  {r['model']} CRF {c}: {clips}")
    return "\n".join(lines)
