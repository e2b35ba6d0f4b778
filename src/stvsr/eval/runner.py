"""The one evaluation loop: a model over the clips of a data folder, scored by a protocol.

For every clip (:func:`stvsr.eval.clips.find_clips`), the protocol's runs
(:mod:`stvsr.eval.protocols`) say which LR frames form each stream; the frames come from a
:class:`~stvsr.eval.source.ClipSource` (HR modcropped, degraded by the chain, 8-bit); each
stream goes through the path ``stvsr upscale`` takes, :func:`stvsr.infer.runner.restore_stream`
(chunk sizes from :data:`stvsr.infer.defaults.CHUNKING`: a Vid4 clip runs whole); the outputs a
run scores are rounded to 8 bits and scored by the one :class:`~stvsr.eval.scorer.Scorer`.
:func:`evaluate_svsr` and :func:`evaluate_spacetime` choose the protocol and shape the result
(:mod:`stvsr.eval.results`); the compressed protocol is in :mod:`stvsr.eval.compressed`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from stvsr.data.chain import DegradationChain, parse_chain
from stvsr.errors import StvsrError
from stvsr.eval.clips import Clip, find_clips, read_names
from stvsr.eval.figures import REPORT_FRAMES, FrameKeeper, write_figures
from stvsr.eval.protocols import ST_PROTOCOLS, Run, spacetime_runs, svsr_runs
from stvsr.eval.results import result_model_name, spacetime_result, svsr_result
from stvsr.eval.scorer import Scorer, bicubic_reference
from stvsr.eval.source import ClipSource, clip_generator
from stvsr.frames import to_uint8
from stvsr.infer.passes import PassWatch
from stvsr.infer.runner import restore_stream

__all__ = ["StreamOptions", "evaluate_spacetime", "evaluate_svsr", "score_clips"]


@dataclass(frozen=True)
class StreamOptions:
    """How each LR stream is run (as for ``stvsr upscale``): device, LR-frame chunking of
    :func:`~stvsr.infer.runner.restore_stream` (``None``: the kind's default), autocast
    precision and LR tile size."""

    device: str = "cpu"
    chunk: int | None = None
    overlap: int | None = None
    precision: str = "fp32"
    tile: int | None = None


def score_clips(model: nn.Module, clips: Sequence[Clip],
                plan: Callable[[Clip, int], list[Run]], chain: DegradationChain, *,
                scorer: Scorer, keeper: FrameKeeper, stream: StreamOptions,
                max_frames: int | None = None, seed: int = 0, progress: bool = True,
                label: str = "eval") -> int:
    """Run ``model`` over each clip's first ``max_frames`` frames as ``plan(clip, n)`` says and
    score the targets into ``scorer`` (``keeper`` saves report frames). Returns the number of
    frames the model made (scored or not)."""
    from tqdm import tqdm

    plans = []
    for clip in clips:
        n = len(clip.files[:max_frames])
        plans.append((clip, n, plan(clip, n)))
    bar = tqdm(total=sum(n for _, n, _ in plans), desc=label, unit="f", disable=not progress)
    outputs = 0
    with PassWatch(model, bar.set_postfix_str):  # counts inside the passes of a clip
        for clip, n, runs in plans:
            bar.set_description(f"{label} {clip.name}")
            source = ClipSource(clip.files[:n], chain, clip_generator(seed, clip.name), runs,
                                keep_inputs=scorer.reference_scale is not None)
            keeper.start_clip(clip.name, n)
            for run in runs:
                outputs += _score_run(model, run, clip.name, source, scorer, keeper, stream,
                                      bar)
            rows = scorer.finish_clip(clip.name, n)
            bar.set_postfix(psnr_y=f"{sum(r['psnr_y'] for r in rows) / max(1, n):.2f}")
    bar.close()
    return outputs


def _score_run(model: nn.Module, run: Run, clip: str, source: ClipSource, scorer: Scorer,
               keeper: FrameKeeper, stream: StreamOptions, bar: Any) -> int:
    """Feed one run's LR stream through ``restore_stream`` and score its targets; returns the
    number of outputs the stream made."""
    targets = {t.output: t for t in run.targets}
    outputs = 0
    for j, out in enumerate(restore_stream(
            model, source.stream(run), device=stream.device, chunk=stream.chunk,
            overlap=stream.overlap, precision=stream.precision, tile=stream.tile)):
        outputs += 1
        target = targets.get(j)
        if target is None:
            continue
        sr, gt = to_uint8(out), source.gt(target.frame)  # (H, W, 3) uint8 each
        ref = None
        if scorer.reference_scale is not None:
            ref = bicubic_reference(source.fed(target.frame), scorer.reference_scale)
        scorer.score(clip, target.frame, target.kind, sr, gt, ref)
        keeper.offer(clip, target.frame, sr, gt, ref)
        bar.update(1)
    return outputs


def _prepared(model: nn.Module, device: str, degradation: str) -> DegradationChain:
    """Put ``model`` in eval mode on ``device``; the degradation chain at its scale."""
    model.eval().to(device)
    return parse_chain(degradation).with_scale(int(model.scale))


def _frame_files(clips: Sequence[Clip], max_frames: int | None) -> dict[str, list[str]]:
    return {c.name: [str(f.resolve()) for f in c.files[:max_frames]] for c in clips}


def evaluate_svsr(
    model: nn.Module,
    data: str | Path,
    *,
    degradation: str = "bi",
    clips: list[str] | None = None,
    max_frames: int | None = None,
    crop_border: int = 0,
    device: str = "cpu",
    chunk: int | None = None,
    overlap: int | None = None,
    precision: str = "fp32",
    tile: int | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    save_frames: int = REPORT_FRAMES,
    seed: int = 0,
) -> dict[str, Any]:
    """Score an S-VSR model (``(B, n, 3, h, w) -> (B, n, 3, s·h, s·w)``) on every clip of
    ``data`` with the S-VSR protocol; returns the JSON-ready result
    (:func:`~stvsr.eval.results.svsr_result`).

    ``degradation`` is a downscale (``bi``, ``bd``, ``bd-duf``) or a chain
    (:mod:`stvsr.data.chain`, e.g. ``bd+h264:crf=25``); a chain with a video codec encodes
    each clip's LR frames as one stream, its random draws seeded by ``seed`` and the clip name.
    ``clips`` selects clips by name. ``out_dir`` (optional) receives a per-frame PSNR plot and
    a bicubic | model | GT crop per clip, and the model's output for ``save_frames`` evenly
    spaced frames of each clip (PNG, listed in the result as ``saved_frames``, for
    ``stvsr report``).
    """
    if getattr(model, "kind", None) == "spacetime":
        raise StvsrError("S-VSR evaluation scores one output per input; this is a space-time "
                         "model: use --task stvsr (evaluate_spacetime)")
    chain = _prepared(model, device, degradation)
    found = find_clips(data, clips or None)
    scorer = Scorer(crop_border, reference_scale=int(model.scale))
    keeper = FrameKeeper(out_dir, result_model_name(model), save_frames)
    t0 = time.perf_counter()
    score_clips(model, found, lambda clip, n: svsr_runs(n), chain, scorer=scorer,
                keeper=keeper, stream=StreamOptions(device, chunk, overlap, precision, tile),
                max_frames=max_frames, seed=seed, progress=progress, label="S-VSR")
    run = {"degradation": degradation, "crop_border": crop_border, "scale": int(model.scale),
           "seconds": time.perf_counter() - t0, "data": str(data), "max_frames": max_frames,
           "out_dir": out_dir}
    result = svsr_result(model, scorer, run, _frame_files(found, max_frames), keeper.saved,
                         keeper.saved_bicubic)
    if out_dir is not None:
        write_figures(Path(out_dir), result, keeper.crops)
    return result


def evaluate_spacetime(
    model: nn.Module,
    data: str | Path,
    *,
    protocol: str = "windowed",
    degradation: str = "bi",
    list_file: str | Path | None = None,
    device: str = "cpu",
    window: int = 7,
    stride: int = 6,
    progress: bool = True,
    max_clips: int | None = None,
    max_frames: int | None = None,
    chunk: int | None = None,
    overlap: int | None = None,
    crop_border: int = 0,
    out_dir: str | Path | None = None,
    save_frames: int = REPORT_FRAMES,
    precision: str = "fp32",
    tile: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Score a ``kind="spacetime"`` model (``(B, n, 3, h, w) -> (B, 2n-1, 3, s·h, s·w)``) on
    ``data`` with an ST-VSR protocol; returns the JSON-ready result
    (:func:`~stvsr.eval.results.spacetime_result`).

    Args:
        data: Vimeo septuplet root or Vid4-like folder (:mod:`stvsr.eval.clips`).
        protocol: ``"windowed"`` or ``"full"`` (:mod:`stvsr.eval.protocols`; a septuplet is
            scored by :data:`~stvsr.eval.protocols.SEPTUPLET` under both).
        degradation: ``"bi"``, ``"bd"``, ``"bd-duf"`` or a chain (:mod:`stvsr.data.chain`).
            With a video codec, each input stream the model sees (a window's 4 LR frames, the
            clip's LR stream, the 2-frame tail) is encoded as one video, as a half-rate file
            would be; ``seed`` and the clip name fix the chain's random draws.
        list_file: selects septuplets (``00001/0001``) or clip names.
        window, stride: windowed protocol (HR frames).
        max_clips, max_frames: evaluate only the first clips / first frames of each clip.
        chunk, overlap, precision, tile: as for ``stvsr upscale`` (:class:`StreamOptions`).
        out_dir, save_frames: when ``out_dir`` is given, the outputs of ``save_frames`` evenly
            spaced frames of each clip (both kinds) are written there (PNG; ``saved_frames`` in
            the result) for ``stvsr report``.
    """
    if getattr(model, "kind", None) != "spacetime":
        raise StvsrError(
            f"evaluate_spacetime needs a space-time model (kind 'spacetime'), got "
            f"{getattr(model, 'kind', None)!r}; use evaluate_svsr for S-VSR models")
    if protocol not in ST_PROTOCOLS:
        raise StvsrError(f"unknown protocol {protocol!r}; choose one of {', '.join(ST_PROTOCOLS)}")
    chain = _prepared(model, device, degradation)
    names = read_names(list_file) if list_file is not None else None
    found = find_clips(data, names)[:max_clips]
    scorer = Scorer(crop_border)
    keeper = FrameKeeper(out_dir, result_model_name(model), save_frames, mix_kinds=True)

    def plan(clip: Clip, n: int) -> list[Run]:
        return spacetime_runs(protocol, n, window=window, stride=stride, vimeo=clip.vimeo)

    t0 = time.perf_counter()
    outputs = score_clips(model, found, plan, chain, scorer=scorer, keeper=keeper,
                          stream=StreamOptions(device, chunk, overlap, precision, tile),
                          max_frames=max_frames, seed=seed, progress=progress,
                          label=f"ST-VSR {protocol}")
    run = {"protocol": protocol, "degradation": degradation, "scale": int(model.scale),
           "seconds": time.perf_counter() - t0, "outputs": outputs, "data": str(data),
           "max_frames": max_frames, "out_dir": out_dir}
    return spacetime_result(model, scorer, run, _frame_files(found, max_frames), keeper.saved)

