"""Collect what a report shows: eval results (S-VSR and ST-VSR) and upscaled videos.

Eval results come from ``stvsr eval --json`` (or the dict it returns). Besides the scores the
report uses what newer evals write (older JSONs still give the table and the charts):

* ``clips[c].per_frame_psnr_y`` / ``per_frame_bicubic_psnr_y`` (S-VSR) or ``clips[c].per_frame``
  (ST-VSR: frame, kind ``input``/``new``, psnr_y) for the per-frame charts;
* ``clips[c].saved_frames`` (``{frame: path}`` relative to ``figures_dir``) — the model's output
  for a few frames — and ``clips[c].frame_files`` (the ground-truth files) for the before/after
  viewers. The bicubic image is recomputed from the ground truth with the same degradation
  (for a new ST-VSR frame: the mean of its two bicubic neighbours, as ``stvsr-bicubic`` does).

Videos are ``(input, output)`` pairs of ``stvsr upscale``: a few output frames are read with
:class:`stvsr.data.video.VideoReader` (seeking, so a long video costs little) and shown beside
the bicubic upscale of the input frame at the same time, or, for a frame the model made (no
input frame at its time), the time-weighted mean of the bicubic upscales of its neighbours.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stvsr.errors import StvsrError
from stvsr.frames import frame_to_tensor, to_8bit
from stvsr.report.html import render
from stvsr.report.page import FrameView, Section, Series, Variant

MAX_FRAMES = 12  # frame viewers in one report (each holds several full frames)
VIDEO_FRAMES = 4  # candidate frames per video


@dataclass
class Run:
    """One eval result."""

    result: dict[str, Any]
    figures: Path | None
    source: str
    label: str = ""

    @property
    def task(self) -> str:
        return str(self.result.get("task", "svsr"))

    @property
    def scale(self) -> int:
        return int(self.result.get("scale", 4))


# --------------------------------------------------------------------------- eval results


def load_result(path: str | Path) -> tuple[dict[str, Any], Path | None]:
    """An eval JSON and the folder of its saved frames (``None`` when it has none)."""
    path = Path(path)
    if not path.is_file():
        raise StvsrError(f"result file {path} not found; pass the --json of a stvsr eval run")
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StvsrError(f"{path} is not a JSON file ({exc})") from None
    if not isinstance(result, dict) or not isinstance(result.get("clips"), dict):
        raise StvsrError(f"{path} is not a stvsr eval result (no 'clips'); pass the --json of "
                         "a stvsr eval run")
    return result, figures_dir(result, path)


def figures_dir(result: dict[str, Any], json_path: Path | None) -> Path | None:
    """Where ``result``'s saved frames are: its ``figures_dir`` as written, else relative to the
    JSON, else the eval default ``<json stem>_figures``."""
    given = result.get("figures_dir")
    options: list[Path] = []
    if given:
        options.append(Path(given))
        if json_path is not None and not Path(given).is_absolute():
            options.append(json_path.parent / given)
            options.append(json_path.parent / Path(given).name)
    if json_path is not None:
        options.append(json_path.with_name(json_path.stem + "_figures"))
    for opt in options:
        if opt.is_dir():
            return opt
    return None


def _unique_labels(runs: list[Run]) -> None:
    """Model names, disambiguated by degradation / protocol / task where they repeat."""
    for r in runs:
        r.label = str(r.result.get("model", "model"))
    for extra in ("degradation", "protocol", "task", "source"):
        seen: dict[str, int] = {}
        for r in runs:
            seen[r.label] = seen.get(r.label, 0) + 1
        for r in runs:
            if seen[r.label] > 1:
                value = r.source if extra == "source" else r.result.get(extra)
                if value:
                    r.label = f"{r.label} ({value})"


def _per_frame(run: Run, clip: dict[str, Any]) -> tuple[list[float | None], list[str] | None]:
    if "per_frame" in clip:
        rows = sorted(clip["per_frame"], key=lambda r: r["frame"])
        n = int(clip.get("frames", len(rows)))
        values: list[float | None] = [None] * n
        kinds = [""] * n
        for r in rows:
            if 0 <= r["frame"] < n:
                values[r["frame"]] = _finite(r.get("psnr_y"))
                kinds[r["frame"]] = r.get("kind", "")
        return values, kinds
    return [_finite(v) for v in clip.get("per_frame_psnr_y", [])], None


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class _ClipFrames:
    """Ground truth and bicubic frames of one clip, read on demand (cached)."""

    def __init__(self, files: list[str], degradation: str, scale: int,
                 saved_bicubic: dict[int, Path] | None = None) -> None:
        from stvsr.data.chain import parse_chain

        self.files = files
        self.chain = parse_chain(degradation).with_scale(scale)
        self.scale = scale
        self.saved_bicubic = saved_bicubic or {}
        self._gt: dict[int, torch.Tensor] = {}
        self._bic: dict[int, torch.Tensor | None] = {}

    def gt(self, i: int) -> torch.Tensor:
        if i not in self._gt:
            from stvsr.data.degradations import modcrop
            from stvsr.data.images import read_image

            self._gt[i] = modcrop(frame_to_tensor(read_image(self.files[i])), self.scale)
        return self._gt[i]

    def bicubic(self, i: int) -> torch.Tensor | None:
        """The bicubic upscale of frame ``i``'s LR input: the one the eval saved, else
        recomputed from the ground truth; ``None`` when a codec made the input (a coded frame
        depends on the whole stream) and the eval did not save it."""
        if i not in self._bic:
            from stvsr.data.images import read_image
            from stvsr.ops.resize import imresize

            if i in self.saved_bicubic and self.saved_bicubic[i].is_file():
                self._bic[i] = frame_to_tensor(read_image(self.saved_bicubic[i]))
            elif self.chain.per_clip:
                self._bic[i] = None
            else:
                lr = self.chain.apply(self.gt(i).unsqueeze(0), np.random.default_rng(0))
                self._bic[i] = imresize(lr, float(self.scale))[0]
        return self._bic[i]


def _eval_sections(runs: list[Run], log: Callable[[str], None]) -> list[Section]:
    from stvsr.frames import to_uint8
    from stvsr.metrics import psnr

    groups: dict[tuple[str, str, str], list[tuple[Run, dict[str, Any]]]] = {}
    for run in runs:
        for name, clip in run.result["clips"].items():
            key = (run.task, str(run.result.get("degradation", "bi")), name)
            groups.setdefault(key, []).append((run, clip))
    sections = []
    for (task, degradation, name), members in groups.items():
        scale = members[0][0].scale
        what = f"ST-VSR ×{scale} space ×2 time" if task == "stvsr" else f"S-VSR ×{scale}"
        sec = Section(key=f"{task}-{degradation}-{name}", title=name,
                      subtitle=f"{what}, {degradation.upper()} degradation",
                      n_frames=max(int(c.get("frames", 0)) for _, c in members))
        kinds_ref: list[str] | None = None
        for run, clip in members:
            values, kinds = _per_frame(run, clip)
            if values:
                sec.series.append(Series(run.label, values, kinds))
                kinds_ref = kinds_ref or kinds
        for _run, clip in members:  # one bicubic curve (S-VSR evals record it per frame)
            bic = clip.get("per_frame_bicubic_psnr_y")
            if bic:
                sec.series.append(Series("bicubic", [_finite(v) for v in bic], dashed=True))
                break
        files = next((c.get("frame_files") for _, c in members if c.get("frame_files")), None)
        saved = sorted({int(i) for r, c in members if r.figures is not None
                        for i in c.get("saved_frames", {})})
        if not saved:
            sec.notes.append("No output frames were saved by these evals (run stvsr eval with "
                             "--json or --out-dir to get before/after viewers).")
        elif not files:
            sec.notes.append("The eval results do not list the ground-truth frames.")
        else:
            sec.candidates = saved
            frames = _ClipFrames(files, degradation, scale, {
                int(i): r.figures / rel for r, c in members if r.figures is not None
                for i, rel in c.get("saved_bicubic_frames", {}).items()})

            def loader(i: int, members=members, frames=frames, kinds=kinds_ref,
                       task=task) -> FrameView | None:
                kind = (kinds[i] if kinds and i < len(kinds) else "") if task == "stvsr" else ""
                if i >= len(frames.files):
                    return None
                gt = to_uint8(frames.gt(i))
                if kind == "new" and 0 < i < len(frames.files) - 1:
                    before, after = frames.bicubic(i - 1), frames.bicubic(i + 1)
                    bic_t = None if before is None or after is None else 0.5 * (before + after)
                    bic_label = "bicubic + frame averaging"
                else:
                    bic_t, bic_label = frames.bicubic(i), "bicubic"
                variants = []
                if bic_t is not None:
                    bic = to_uint8(bic_t)
                    variants.append(Variant(bic_label, bic, psnr(bic, gt, y_channel=True),
                                            "bicubic"))
                for run, clip in members:
                    rel = clip.get("saved_frames", {}).get(str(i))
                    if rel is None or run.figures is None:
                        continue
                    path = run.figures / rel
                    if not path.is_file():
                        log(f"warning: {path} is missing; {run.label} left out of frame {i}")
                        continue
                    from stvsr.data.images import read_image

                    img = read_image(path)
                    if img.shape != gt.shape:
                        log(f"warning: {path} is {img.shape[1]}x{img.shape[0]}, the ground "
                            f"truth {gt.shape[1]}x{gt.shape[0]}; left out")
                        continue
                    variants.append(Variant(run.label, img, psnr(img, gt, y_channel=True)))
                variants.append(Variant("ground truth", gt, None, "gt"))
                if len(variants) < 3:
                    return None
                return FrameView(i, kind, variants, left=0, right=1)

            sec.loader = loader
        sections.append(sec)
    return sections


# --------------------------------------------------------------------------- videos


def _video_section(inp: Path, out: Path, offset: float, idx: int) -> Section:
    from stvsr.data.video import count_frames, probe

    if not inp.exists():
        raise StvsrError(f"input video {inp} not found")
    if not out.exists():
        raise StvsrError(f"output video {out} not found")
    info_in, info_out = probe(inp), probe(out)
    n_in, n_out = count_frames(inp), count_frames(out)
    fps_in = info_in.frame_rate or Fraction(25)
    fps_out = info_out.frame_rate or Fraction(25)
    sec = Section(key=f"video-{idx}", title=out.name, subtitle=f"upscaled from {inp.name}",
                  n_frames=n_out)
    ratio = float(fps_out / fps_in) if fps_in else 1.0
    sec.facts = [
        ("input", f"{inp} — {info_in.width}×{info_in.height}, {n_in} frames, "
                  f"{float(fps_in):.3f} fps"),
        ("output", f"{out} — {info_out.width}×{info_out.height}, {n_out} frames, "
                   f"{float(fps_out):.3f} fps"),
        ("scale", f"×{info_out.width / info_in.width:.3g} space, ×{ratio:.3g} time"),
    ]
    from stvsr.eval.figures import report_frames

    cands = report_frames(n_out, VIDEO_FRAMES)
    if ratio > 1.5 and cands and all(c % 2 == 0 for c in cands) and n_out > 2:
        mid = len(cands) // 2
        cands[mid] = min(n_out - 1, cands[mid] + 1)  # show at least one frame the model made
    sec.candidates = sorted(set(cands))
    sec.notes.append("No ground truth: the bicubic upscale of the input stands on the left.")

    def loader(j: int) -> FrameView | None:
        return _video_frame(inp, out, j, fps_in, fps_out, offset, (info_out.height,
                                                                     info_out.width))

    sec.loader = loader
    return sec


def _first_frame(path: Path, start: Fraction, end: Fraction | None = None) -> list[Any]:
    from stvsr.data.video import VideoReader

    reader = VideoReader(path, start=max(Fraction(0), start), end=end)
    frames = []
    try:
        for fr in reader:
            frames.append(fr)
            if end is None:
                break
    finally:
        reader.close()
    return frames


def _video_frame(inp: Path, out: Path, j: int, fps_in: Fraction, fps_out: Fraction,
                 offset: float, size: tuple[int, int]) -> FrameView | None:
    from stvsr.metrics import to_uint8
    from stvsr.ops.resize import imresize

    got = _first_frame(out, Fraction(j) / fps_out - 1 / (4 * fps_out))
    if not got:
        return None
    fo = got[0]
    t = fo.time + Fraction(offset).limit_denominator(1_000_000)
    near = _first_frame(inp, t - Fraction(3, 2) / fps_in, t + Fraction(3, 2) / fps_in)
    if not near:
        return None
    tol = 1 / (4 * max(fps_in, fps_out))
    same = [f for f in near if abs(f.time - t) <= tol]
    h, w = size

    def up(frame: Any) -> torch.Tensor:
        return imresize(frame_to_tensor(frame.rgb).unsqueeze(0), size=(h, w))[0]

    if same:
        kind, bic, label = "input", up(same[0]), "input, bicubic"
    else:
        before = [f for f in near if f.time < t]
        after = [f for f in near if f.time > t]
        if before and after:
            a, b = before[-1], after[0]
            wb = float((t - a.time) / (b.time - a.time))
            bic = (1 - wb) * up(a) + wb * up(b)
            label = "input, bicubic + frame averaging"
        else:
            bic = up((before or after)[-1 if before else 0])
            label = "input, bicubic (nearest frame)"
        kind = "new"
    out_rgb = to_8bit(fo.rgb)
    variants = [Variant(label, to_uint8(bic), None, "input"),
                Variant("output", np.ascontiguousarray(out_rgb), None, "output")]
    return FrameView(j, kind, variants, time=float(fo.time))


# --------------------------------------------------------------------------- table


def table_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per clip × model (then a mean row per model) for the numbers table."""
    rows = []
    for run in runs:
        res = run.result
        setting = str(res.get("degradation", "")).upper()
        if run.task == "stvsr":
            setting += f", {res.get('protocol', 'windowed')}"
        for name, clip in list(res["clips"].items()) + [("mean", res.get("mean", {}))]:
            rows.append({
                "clip": name, "model": run.label, "task": "ST-VSR" if run.task == "stvsr"
                else "S-VSR", "setting": setting,
                "psnr_y": _finite(clip.get("psnr_y")), "ssim_y": _finite(clip.get("ssim_y")),
                "psnr_y_input": _finite(clip.get("psnr_y_input")),
                "psnr_y_new": _finite(clip.get("psnr_y_new")),
                "frames": clip.get("frames"), "frames_new": clip.get("frames_new"),
                "bicubic_psnr_y": _finite(clip.get("bicubic_psnr_y")),
                "mean": name == "mean",
            })
    return rows


# --------------------------------------------------------------------------- entry point


def _choose(sections: list[Section], budget: int, log: Callable[[str], None]) -> None:
    """Load up to ``budget`` frame viewers, spread round-robin over the sections."""
    queues = [list(_spread(s.candidates)) for s in sections]
    left = budget
    while left > 0 and any(queues):
        for sec, q in zip(sections, queues):
            if left <= 0 or not q:
                continue
            i = q.pop(0)
            if sec.loader is None:
                continue
            view = sec.loader(i)
            if view is not None:
                sec.frames.append(view)
                left -= 1
    for sec, q in zip(sections, queues):
        sec.frames.sort(key=lambda v: v.index)
        if q and sec.loader is not None:
            sec.notes.append(f"{len(q)} more saved frame(s) left out to keep the page small "
                             f"(--max-frames {budget}).")


def _spread(items: list[int]) -> Iterable[int]:
    """Middle first, then the others outward, so a small budget still shows a typical frame."""
    items = list(items)
    order = []
    while items:
        order.append(items.pop(len(items) // 2))
    return order


def build_report(
    out: str | Path,
    results: Iterable[str | Path | tuple[dict[str, Any], Path | None, str]] = (),
    videos: Iterable[tuple[str | Path, str | Path]] = (),
    *,
    max_frames: int = MAX_FRAMES,
    external: bool = False,
    jpeg_quality: int | None = None,
    title: str = "stvsr report",
    video_offset: float = 0.0,
    log: Callable[[str], None] = print,
) -> Path:
    """Write the HTML report ``out``.

    Args:
        results: eval JSON paths, or ``(result, figures_dir, source)`` tuples.
        videos: ``(input, output)`` pairs of ``stvsr upscale`` runs.
        max_frames: frame viewers in the whole page (each embeds a few full frames).
        external: images go to ``<out stem>_files/`` beside the page instead of data URIs.
        jpeg_quality: JPEG images of this quality instead of PNG (smaller, lossy).
        video_offset: seconds of input time at the output's first frame (``upscale --start``).
    """

    runs: list[Run] = []
    for item in results:
        if isinstance(item, tuple):
            res, figs, src = item
            runs.append(Run(res, figs, src))
        else:
            res, figs = load_result(item)
            runs.append(Run(res, figs, Path(item).name))
    pairs = [(Path(a), Path(b)) for a, b in videos]
    if not runs and not pairs:
        raise StvsrError("nothing to report: pass eval JSON files and/or --video INPUT OUTPUT")
    if max_frames < 0:
        raise StvsrError(f"--max-frames must be >= 0, got {max_frames}")
    _unique_labels(runs)
    sections = _eval_sections(runs, log)
    sections += [_video_section(a, b, video_offset, i) for i, (a, b) in enumerate(pairs)]
    _choose(sections, max_frames, log)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    page = render(title, table_rows(runs), sections, [r.source for r in runs],
                  [(str(a), str(b)) for a, b in pairs], out=out, external=external,
                  jpeg_quality=jpeg_quality)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    shown = sum(len(s.frames) for s in sections)
    log(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB; {len(runs)} result(s), "
        f"{len(pairs)} video(s), {shown} frame viewer(s))")
    return out
