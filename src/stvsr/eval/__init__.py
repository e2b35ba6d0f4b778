"""Evaluation: one loop that scores a model on a benchmark by a protocol.

Modules, in the order a frame meets them:

* :mod:`~stvsr.eval.clips`: the one clip finder (Vid4-like folders, Vimeo septuplets).
* :mod:`~stvsr.eval.protocols`: protocols as data (S-VSR, ST-VSR windowed / full, Vimeo
  septuplets): which LR frames go in, which output is scored against which HR frame, as what
  kind (``input`` / ``new``).
* :mod:`~stvsr.eval.source`: a clip's HR frames, read once in order and degraded.
* :mod:`~stvsr.eval.runner`: the loop (through :func:`stvsr.infer.runner.restore_stream`, the
  path of ``stvsr upscale``), :func:`evaluate_svsr` and :func:`evaluate_spacetime`.
* :mod:`~stvsr.eval.scorer`: the one scorer (PSNR/SSIM, Y and RGB, per clip and per kind).
* :mod:`~stvsr.eval.results` / :mod:`~stvsr.eval.figures`: the JSON result and table, the
  saved frames, crops and plot.
* :mod:`~stvsr.eval.compressed`: the compressed-VSR protocol (BD + H.264 CRF 15 / 25 / 35).
"""

from stvsr.eval.clips import Clip, find_clips
from stvsr.eval.compressed import evaluate_compressed, format_compressed
from stvsr.eval.results import format_table, write_json
from stvsr.eval.runner import evaluate_spacetime, evaluate_svsr

__all__ = [
    "Clip",
    "evaluate_compressed",
    "evaluate_spacetime",
    "evaluate_svsr",
    "find_clips",
    "format_compressed",
    "format_table",
    "write_json",
]
