"""Progress reporting of `stvsr upscale`: a tqdm bar, JSON lines, or nothing."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from stvsr.errors import StvsrError

HEARTBEAT_S = 1.0  # the bar's clock ticks this often while a chunk is being restored


class Progress:
    """Frames done / total, fps and ETA: a tqdm bar (``"bar"``), JSON lines on stderr
    (``"json"``: ``{"stage", "frames_done", "total", "fps", "eta_s", "elapsed_s", "status"}``)
    or nothing (``"none"``).

    A model restores a whole chunk before its first frame comes out, so the bar is redrawn
    every :data:`HEARTBEAT_S` seconds by a background thread: its elapsed time runs and
    :meth:`status` says what is being worked on (JSON mode: a line every 5 s)."""

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
        self._status = self._detail = ""
        self._stop = threading.Event()
        self._closed = False
        self._ticker: threading.Thread | None = None
        if mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, unit="frame", desc=stage,
                             file=self.stream, dynamic_ncols=True)
        if mode != "none":
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        """Redraw the bar (its elapsed time) while nothing else does; JSON: every 5 s."""
        period = HEARTBEAT_S if self.mode == "bar" else 5.0
        while not self._stop.wait(period):
            bar = self._bar
            if bar is not None:
                with bar.get_lock():
                    bar.refresh()
            elif self.mode == "json" and time.perf_counter() - self._last_emit >= period:
                self._last_emit = time.perf_counter()
                self.emit()

    def status(self, text: str) -> None:
        """Say what is being worked on (shown beside the bar, or in the JSON lines); clears
        the :meth:`detail`."""
        self._status, self._detail = text, ""
        self._show()

    def detail(self, text: str) -> None:
        """Say how far the work :meth:`status` names has got (shown after it), e.g. the counts
        of a model's passes (:class:`stvsr.infer.passes.PassWatch`)."""
        self._detail = text
        self._show()

    @property
    def status_text(self) -> str:
        """The :meth:`status`, then the :meth:`detail` (either may be empty)."""
        return " · ".join(t for t in (self._status, self._detail) if t)

    def _show(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(self.status_text, refresh=True)

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
                "fps": round(fps, 3), "eta_s": None if eta is None else round(eta, 1),
                "elapsed_s": round(time.perf_counter() - self.t0, 1), "status": self.status_text}
        print(json.dumps(line), file=self.stream, flush=True)

    def close(self) -> None:
        """Stop the clock and finish the display (once; later calls do nothing)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join(timeout=2 * HEARTBEAT_S)
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "json" and self.done < self.total:
            self.emit()
