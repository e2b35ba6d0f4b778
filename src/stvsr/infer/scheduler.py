"""Who restores which segment: one interface for one process and for many.

The restore loop (:func:`stvsr.infer.execute.restore_segments`) and
:func:`stvsr.infer.engine.upscale_video` talk to a :class:`Scheduler` only:

* :meth:`~Scheduler.prepare` opens (or resumes) the work folder and scans the input;
* :meth:`~Scheduler.claim` says whether this process restores a segment;
* :meth:`~Scheduler.finish` waits until every segment is done and says whether this process
  joins them into the output;
* :meth:`~Scheduler.report` adds to the summary.

:class:`LocalScheduler` is one process doing everything;
:class:`stvsr.infer.distributed.DistributedScheduler` shares the segments among the ranks of a
``torchrun`` / ``srun`` launch.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any, Protocol, runtime_checkable

from stvsr.infer.progress import Progress
from stvsr.infer.segments import WorkDir

__all__ = ["LocalScheduler", "Scan", "Scheduler"]

#: The input scan: frame times and scene distances.
Scan = tuple[list[Fraction], list[float]]


@runtime_checkable
class Scheduler(Protocol):
    """How the segments of a run are shared (see the module docstring)."""

    rank: int  # this process's rank (0 for one process)
    world: int  # how many processes share the run
    is_main: bool  # this process joins the output and reports
    claimed: list[int]  # segments this process restored in this run

    def prepare(self, work: WorkDir, key: dict[str, Any], scan: Callable[[], Scan]
                ) -> tuple[bool, list[Fraction], list[float]]:
        """Open (or resume) ``work`` for ``key`` and scan the input with ``scan``; returns
        ``(resumed, times, distances)``."""
        ...

    def claim(self, index: int, bar: Progress | None = None) -> bool:
        """True: this process restores segment ``index`` now."""
        ...

    def finish(self, work: WorkDir, indices: list[int], suffix: str,
               bar: Progress | None = None) -> bool:
        """Every segment is done; True: this process joins them."""
        ...

    def report(self) -> dict[str, Any]:
        """What to add to the run's summary."""
        ...


class LocalScheduler:
    """One process restores every segment and joins them."""

    rank, world, is_main = 0, 1, True

    def __init__(self) -> None:
        self.claimed: list[int] = []

    def prepare(self, work: WorkDir, key: dict[str, Any], scan: Callable[[], Scan]
                ) -> tuple[bool, list[Fraction], list[float]]:
        """Open the work folder (a changed runtime alone is refused) and scan."""
        resumed = work.open(key, refuse="runtime")
        times, dists = scan()
        return resumed, times, dists

    def claim(self, index: int, bar: Progress | None = None) -> bool:
        """Every segment is this process's."""
        self.claimed.append(index)
        return True

    def finish(self, work: WorkDir, indices: list[int], suffix: str,
               bar: Progress | None = None) -> bool:
        """Nothing to wait for: this process joins."""
        return True

    def report(self) -> dict[str, Any]:
        """Nothing to add."""
        return {}
