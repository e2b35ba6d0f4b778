"""What an evaluation writes beside its numbers: saved output frames (for ``stvsr report``), a
bicubic | model | GT centre crop per clip and the per-frame PSNR-Y plot (S-VSR)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "REPORT_FRAMES",
    "FrameKeeper",
    "report_frames",
    "save_report_frame",
    "side_by_side",
    "write_figures",
]

REPORT_FRAMES = 3  # output frames per clip an eval keeps for `stvsr report`


def report_frames(n: int, k: int) -> list[int]:
    """``k`` evenly spaced frame indices of a clip of ``n`` frames, away from both ends where
    possible (the frames an eval saves for ``stvsr report``)."""
    if n <= 0 or k <= 0:
        return []
    if k >= n:
        return list(range(n))
    return sorted({int(np.floor((i + 1) * n / (k + 1))) for i in range(k)})


def mixed_kinds(frames: list[int]) -> list[int]:
    """Frames to save for a space-time report: when they are all input frames or all new
    frames, the first one moves on by one, so that both kinds are shown."""
    if len(frames) > 1 and len({f % 2 for f in frames}) == 1 and frames[0] + 1 not in frames:
        frames = [frames[0] + 1, *frames[1:]]
    return frames


def save_report_frame(out_dir: str | Path, model: str, clip: str, idx: int,
                      rgb: np.ndarray) -> str:
    """Write one output frame under ``out_dir/frames/MODEL/CLIP/``; returns its path relative
    to ``out_dir`` (what the result's ``saved_frames`` lists)."""
    from stvsr.data.images import write_image

    rel = Path("frames") / _safe(model) / _safe(clip) / f"{idx:06d}.png"
    path = Path(out_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, rgb)
    return rel.as_posix()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"


BICUBIC_DIR = "bicubic-of-input"  # where a kept frame's bicubic reference is written


class FrameKeeper:
    """Keeps what ``out_dir`` gets: ``save_frames`` evenly spaced outputs of each clip (both
    kinds shown when ``mix_kinds``) and the middle frame's crop when a reference exists.

    Nothing is kept without ``out_dir``.
    """

    def __init__(self, out_dir: str | Path | None, model: str, save_frames: int,
                 *, mix_kinds: bool = False) -> None:
        self.out_dir, self.model = out_dir, model
        self.save_frames, self.mix_kinds = save_frames, mix_kinds
        self.saved: dict[str, dict[str, str]] = {}
        self.saved_bicubic: dict[str, dict[str, str]] = {}  # the reference of those frames
        self.crops: dict[str, np.ndarray] = {}
        self._keep: set[int] = set()
        self._mid = -1

    def start_clip(self, clip: str, n_frames: int) -> None:
        """Prepare for the clip's ``n_frames`` frames."""
        self.saved[clip] = {}
        self.saved_bicubic[clip] = {}
        frames = report_frames(n_frames, self.save_frames)
        if self.mix_kinds:
            frames = mixed_kinds(frames)
        self._keep = set(frames) if self.out_dir is not None else set()
        self._mid = n_frames // 2 if self.out_dir is not None else -1

    def offer(self, clip: str, frame: int, sr: np.ndarray, gt: np.ndarray,
              reference: np.ndarray | None) -> None:
        """Save output ``sr`` of ``frame`` if it is one to keep; crop it if it is the middle."""
        if frame == self._mid and reference is not None:
            self.crops[clip] = side_by_side(reference, sr, gt)
        if frame in self._keep:
            self.saved[clip][str(frame)] = save_report_frame(self.out_dir, self.model, clip,
                                                             frame, sr)
            if reference is not None:  # what the model was fed, as bicubic (codecs: not
                # recomputable from the frame alone)
                self.saved_bicubic[clip][str(frame)] = save_report_frame(
                    self.out_dir, BICUBIC_DIR, clip, frame, reference)


def side_by_side(*images: np.ndarray, size: int = 192) -> np.ndarray:
    """Centre crops of equal-size images, side by side with a 4-px white gap."""
    h, w = images[0].shape[:2]
    s = min(size, h, w)
    y, x = (h - s) // 2, (w - s) // 2
    gap = np.full((s, 4, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for img in images:
        parts += [img[y:y + s, x:x + s], gap]
    return np.concatenate(parts[:-1], axis=1)


def write_figures(out_dir: Path, result: dict[str, Any], crops: dict[str, np.ndarray]) -> None:
    """The crops (``CLIP_crop.png``, labelled) and the per-frame PSNR-Y plot of an S-VSR
    ``result`` (``psnr_per_frame.png``; skipped, saying so, without matplotlib)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, img in crops.items():
        _labelled(img, ("bicubic", result["model"], "GT")).save(out_dir / f"{name}_crop.png")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the per-frame PSNR plot "
              "(pip install 'stvsr[plot]')")
        return
    model = result["model"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (name, clip) in enumerate(result["clips"].items()):
        color = f"C{i}"
        ax.plot(clip["per_frame_psnr_y"], color=color, label=f"{name} ({model})")
        ax.plot(clip["per_frame_bicubic_psnr_y"], color=color, linestyle=":",
                label=f"{name} (bicubic)")
    ax.set_xlabel("frame")
    ax.set_ylabel("PSNR-Y (dB)")
    ax.set_title(f"{model}, {result['degradation']}: per-frame PSNR-Y")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out_dir / "psnr_per_frame.png", dpi=100)
    plt.close(fig)


def _labelled(img: np.ndarray, labels: tuple[str, ...]) -> Any:
    """``img`` under an 18-px white band with one label over each third (a PIL image)."""
    from PIL import Image, ImageDraw

    pil = Image.fromarray(img)
    canvas = Image.new("RGB", (pil.width, pil.height + 18), "white")
    canvas.paste(pil, (0, 18))
    draw = ImageDraw.Draw(canvas)
    third = (pil.width + 8) // 3
    for i, label in enumerate(labels):
        draw.text((i * third + 4, 3), label, fill="black")
    return canvas
