"""Resumable output for ``stvsr upscale``: the segment plan and the work folder with its manifest.

The input frames ``0 .. n-1`` are split into *shots* at scene cuts and every shot into
*segments* of at most ``length`` input frames (a segment never spans a cut). Each segment is
restored on its own, with up to ``context`` extra input frames on each side (never crossing its
shot's borders) whose outputs are discarded, and written to its own file in
``OUTPUT.stvsr-work/``. Because a segment's output depends only on the input and the options,
a run that was interrupted and resumed gives exactly the frames of an uninterrupted run.

``manifest.json`` records what the work belongs to (input fingerprint, model and weights hash,
options), the scan of the input (exact per-frame times and scene distances) and the finished
segments. A manifest whose key differs from the current run is discarded with a warning that
names what changed, except when only the run's device, precision or deformable-conv
implementation changed: then the rerun is refused (the new frames would not match the finished
ones) with a one-line error that says how to resume or start over.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from stvsr.errors import VideoError
from stvsr.infer.layout import StreamLayout

__all__ = [
    "MANIFEST_VERSION",
    "Segment",
    "WorkDir",
    "input_fingerprint",
    "output_plan",
    "plan_segments",
]

MANIFEST_VERSION = 2  # 2: options are UpscaleOptions (encoder options nested)


@dataclass(frozen=True)
class Segment:
    """Input frames ``[start, end)`` owned by segment ``index``, inside shot ``[shot_start,
    shot_end)``."""

    index: int
    start: int
    end: int
    shot_start: int
    shot_end: int

    def context(self, left: int, right: int) -> tuple[int, int]:
        """Input range ``[lo, hi)`` to decode: the segment plus context, clipped to its shot."""
        return max(self.shot_start, self.start - left), min(self.shot_end, self.end + right)


def plan_segments(n: int, cuts: list[int], length: int) -> list[Segment]:
    """Split ``n`` input frames at ``cuts`` (first frames of new shots) into segments of at most
    ``length`` frames, balanced within each shot."""
    if length < 1:
        raise VideoError("segment length must be >= 1 frame")
    bounds = [0] + sorted(c for c in set(cuts) if 0 < c < n) + [n]
    segs: list[Segment] = []
    for s0, s1 in zip(bounds[:-1], bounds[1:], strict=True):
        pieces = -(-(s1 - s0) // length)
        for k in range(pieces):
            a = s0 + (s1 - s0) * k // pieces
            b = s0 + (s1 - s0) * (k + 1) // pieces
            segs.append(Segment(len(segs), a, b, s0, s1))
    return segs


def output_plan(
    seg: Segment, times: list[Fraction], *, interpolate: bool
) -> list[tuple[str, int, Fraction]]:
    """The output frames of ``seg`` as ``(what, i, time)``: the outputs it owns in the layout of
    the whole video (:class:`~stvsr.infer.layout.StreamLayout`; with ``interpolate`` the
    space-time one, ``n`` inputs give ``2n - 1`` outputs, else one output per input).

    ``what`` is ``"frame"`` (restored input ``i``), ``"mid"`` (in-between frame of inputs ``i``
    and ``i + 1``) or ``"dup"`` (in-between slot across a scene cut: a copy of output ``i``).
    In-between frames sit at the midpoint of their neighbours' times.
    """
    layout = StreamLayout("spacetime" if interpolate else "recurrent")
    n = len(times)
    out: list[tuple[str, int, Fraction]] = []
    for j in layout.owned(seg.start, seg.end, last=seg.end == n):
        what, i = layout.source(j)
        if what == "frame":
            out.append((what, i, times[i]))
        else:
            out.append(("mid" if i + 1 < seg.shot_end else "dup", i, (times[i] + times[i + 1]) / 2))
    return out


def input_fingerprint(path: Path, info: Any) -> dict[str, Any]:
    """What identifies the input: absolute path, size, mtime and the probed stream info."""
    path = path.resolve()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        stat = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        size: Any = hashlib.sha256(json.dumps(stat).encode()).hexdigest()
        mtime: Any = max((s[2] for s in stat), default=0)
    else:
        st = path.stat()
        size, mtime = st.st_size, st.st_mtime_ns
    return {
        "path": str(path),
        "size": size,
        "mtime_ns": mtime,
        "width": info.width,
        "height": info.height,
        "frame_rate": str(info.frame_rate),
        "pix_fmt": info.pix_fmt,
        "codec": info.codec,
        "header_frames": info.num_frames,
    }


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _changes(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted path, old value, new value)`` for every leaf where two keys differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[tuple[str, Any, Any]] = []
        for k in sorted(set(old) | set(new), key=str):
            out += _changes(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if _canon(old) == _canon(new) else [(prefix.rstrip("."), old, new)]


def _show(value: Any) -> str:
    return "none" if value is None else str(value)


class WorkDir:
    """``OUTPUT.stvsr-work/``: segment files and ``manifest.json`` (written atomically)."""

    def __init__(self, output: Path) -> None:
        self.path = output.with_name(output.name + ".stvsr-work")
        self.manifest_path = self.path / "manifest.json"
        self.manifest: dict[str, Any] = {}

    def open(self, key: dict[str, Any], *, refuse: str | None = None) -> bool:
        """Load a manifest made with the same ``key`` (returns True: resuming) or start afresh:
        a mismatching one is removed with a warning that names what changed. When only the
        ``refuse`` section of the key changed (the device, precision and deformable-conv
        implementation: the same command on another machine or setting, whose frames would
        not match the finished ones) a :class:`VideoError` says so and nothing is removed."""
        if self.manifest_path.is_file():
            try:
                old = json.loads(self.manifest_path.read_text())
            except (OSError, ValueError):
                old = None
            new_key = json.loads(_canon(key))
            if isinstance(old, dict) and old.get("version") == MANIFEST_VERSION:
                changes = _changes(old.get("key"), new_key)
                if not changes:
                    self.manifest = old
                    self.merge_markers()
                    return True
                if refuse is not None and all(p.split(".")[0] == refuse for p, _, _ in changes):
                    raise VideoError(self._refusal(changes))
                what = "; ".join(f"{p} {_show(a)} -> {_show(b)}" for p, a, b in changes[:4])
                what += " ..." if len(changes) > 4 else ""
            else:
                what = "an older or unreadable manifest"
            warnings.warn(
                f"{self.path} belongs to a different input or different options ({what}); "
                "starting over",
                RuntimeWarning,
                stacklevel=3,
            )
        if self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        try:
            self.path.mkdir(parents=False)
        except OSError as exc:
            raise VideoError(f"cannot create work folder {self.path}: {exc.strerror}") from None
        self.manifest = {"version": MANIFEST_VERSION, "key": json.loads(_canon(key)),
                         "scan": None, "done": {}}
        self.save()
        return False

    def _refusal(self, changes: list[tuple[str, Any, Any]]) -> str:
        names = {"device": "device", "precision": "precision", "dcn": "deformable conv"}
        old = ", ".join(f"{names.get(p.split('.')[-1], p)} {_show(a)}" for p, a, _ in changes)
        new = ", ".join(f"{names.get(p.split('.')[-1], p)} {_show(b)}" for p, _, b in changes)
        hints = []
        for p, a, _ in changes:
            field = p.split(".")[-1]
            if field == "device" and a is not None:
                hints.append(f"--device {str(a).split()[0]}")
            elif field == "precision" and a is not None:
                hints.append(f"--precision {a}")
            elif field == "dcn" and a == "pure":
                hints.append("STVSR_NATIVE=0")
        again = f"rerun with {' '.join(hints)} to resume, or " if hints else ""
        return (f"{self.path} was started with {old}, this run has {new}, and its frames would "
                f"not match the finished ones: {again}delete {self.path} to start over")
    def save(self) -> None:
        tmp = self.manifest_path.with_suffix(".json.tmp")
        try:
            tmp.write_text(json.dumps(self.manifest))
            os.replace(tmp, self.manifest_path)
        except OSError as exc:
            raise VideoError(
                f"cannot write {self.manifest_path} ({exc.strerror}); free disk space and run "
                "the same command again to resume"
            ) from None

    # ---- scan ---------------------------------------------------------------------------
    def save_scan(self, times: list[Fraction], distances: list[float]) -> None:
        self.manifest["scan"] = {
            "times": [f"{t.numerator}/{t.denominator}" for t in times],
            "distances": [round(float(d), 6) for d in distances],
        }
        self.save()

    def load_scan(self) -> tuple[list[Fraction], list[float]] | None:
        scan = self.manifest.get("scan")
        if not scan:
            return None
        return [Fraction(t) for t in scan["times"]], [float(d) for d in scan["distances"]]

    # ---- segments -----------------------------------------------------------------------
    def segment_path(self, index: int, suffix: str) -> Path:
        return self.path / f"seg{index:06d}{suffix}"

    def is_done(self, index: int, suffix: str) -> bool:
        return str(index) in self.manifest["done"] and self.segment_path(index, suffix).exists()

    def mark_done(self, index: int, frames: int) -> None:
        if self.shared is not None:  # many ranks: a marker file each, see merge_markers()
            self.write_marker(index, frames, **self.shared)
            return
        self.manifest["done"][str(index)] = frames
        self.save()

    # ---- many processes (stvsr.infer.distributed) ---------------------------------------
    #: Set (to what identifies this rank) when several ranks share this folder: only rank 0
    #: writes the manifest, every rank records a finished segment as ``segNNNNNN.done``.
    shared: dict[str, Any] | None = None

    def marker_path(self, index: int) -> Path:
        return self.path / f"seg{index:06d}.done"

    def write_marker(self, index: int, frames: int, **extra: Any) -> None:
        path = self.marker_path(index)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({"frames": frames, **extra}))
            os.replace(tmp, path)
        except OSError as exc:
            raise VideoError(f"cannot write {path} ({exc.strerror}); run the same command "
                             "again to resume") from None

    def merge_markers(self) -> dict[int, dict[str, Any]]:
        """Fold the ``.done`` markers of other ranks (or of an earlier run with many ranks)
        into the manifest and remove them; returns what they said, by segment index."""
        found: dict[int, dict[str, Any]] = {}
        for path in sorted(self.path.glob("seg*.done")):
            try:
                info = json.loads(path.read_text())
                found[int(path.name[3:-5])] = info
                self.manifest["done"][str(int(path.name[3:-5]))] = int(info["frames"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a marker being written: the segment is redone
        if found:
            self.save()
            for index in found:
                self.marker_path(index).unlink(missing_ok=True)
        return found

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
