"""Progress reporting of `stvsr upscale`: a tqdm bar, JSON lines, or nothing."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

from stvsr.errors import StvsrError

if TYPE_CHECKING:
    pass






# --------------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------------


class Progress:
    """Frames done / total, fps and ETA: a tqdm bar (``"bar"``), JSON lines on stderr
    (``"json"``: ``{"stage", "frames_done", "total", "fps", "eta_s"}``) or nothing (``"none"``)."""

    def __init__(self, mode: str, total: int, *, initial: int = 0, stage: str = "upscale",
                 stream: Any = None) -> None:
        if mode not in ("bar", "json", "none"):
            raise StvsrError(f"unknown progress mode {mode!r}; use bar, json or none")
        self.mode, self.total, self.done, self.stage = mode, total, initial, stage
        self.initial = initial
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.perf_counter()
        self._last_emit = 0.0
        self._bar = None
        if mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, unit="frame", desc=stage,
                             file=self.stream, dynamic_ncols=True)

    @property
    def fps(self) -> float:
        return (self.done - self.initial) / max(time.perf_counter() - self.t0, 1e-9)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "json":
            now = time.perf_counter()
            if now - self._last_emit >= 0.5 or self.done >= self.total:
                self._last_emit = now
                self.emit()

    def emit(self) -> None:
        fps = self.fps
        eta = (self.total - self.done) / fps if fps > 0 else None
        line = {"stage": self.stage, "frames_done": self.done, "total": self.total,
                "fps": round(fps, 3), "eta_s": None if eta is None else round(eta, 1)}
        print(json.dumps(line), file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "json" and self.done < self.total:
            self.emit()
