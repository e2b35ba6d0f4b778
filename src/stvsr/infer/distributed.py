"""Many processes, GPUs or machines for ``stvsr upscale``, on PyTorch's own launcher.

``torchrun --nnodes N --nproc-per-node G -m stvsr upscale IN OUT ...`` (or the same command
under Slurm's ``srun``) splits one upscale over all ranks. The unit of work is the resumable
segment of :mod:`stvsr.infer.segments`:

* Rank 0 opens (or resumes) the work folder ``OUTPUT.stvsr-work/``, removes the claims of
  earlier runs (a claim whose segment never finished is stale once its run is over), scans the
  input once and writes the scan to the manifest. The other ranks wait at a barrier, check that
  they see a token file rank 0 wrote there (the folder must be on a filesystem every rank
  sees), and read the same manifest; the segment plan follows deterministically from it.
* Every rank walks the unfinished segments in order and *claims* each one it reaches with
  ``os.open(segNNNNNN.claim, O_CREAT | O_EXCL)`` (the file holds rank, host and pid): a claim
  taken by another rank is skipped, so a slow rank never holds up the others. A finished
  segment is recorded as ``segNNNNNN.done`` (only rank 0 writes the manifest).
* When no segment is left, the ranks meet at a barrier; rank 0 folds the ``.done`` markers into
  the manifest and joins the segments into the output (the usual atomic join), then removes the
  work folder. A failing rank leaves a ``STOP`` file so that the others stop claiming, and tells
  them at the next barrier; a killed rank's segment is redone on the next run, which resumes.

Each rank uses its own device: ``--device cuda`` becomes ``cuda:LOCAL_RANK`` (``cuda:0`` when
the launcher gives each task a single visible GPU); barriers use NCCL on GPUs and gloo on the
CPU (``STVSR_DIST_BACKEND`` overrides; ``STVSR_DIST_TIMEOUT`` is the barrier timeout in seconds,
default one day: rank 0 scans the whole input while the others wait). Only rank 0 prints
progress and the final messages.

Launch variables: torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (and ``MASTER_ADDR`` /
``MASTER_PORT``); without them, inside an ``srun`` step (``SLURM_STEP_ID`` set),
``SLURM_PROCID`` / ``SLURM_STEP_NUM_TASKS`` (or ``SLURM_NTASKS``) / ``SLURM_LOCALID``, with
``MASTER_ADDR`` defaulting to the first host of ``SLURM_STEP_NODELIST`` and ``MASTER_PORT`` to
a port derived from the job id.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction
from typing import Any

from stvsr.errors import StvsrError, VideoError
from stvsr.infer.segments import MANIFEST_VERSION, WorkDir

__all__ = [
    "DistributedScheduler",
    "LaunchEnv",
    "RankFailed",
    "expand_nodelist",
    "launch_env",
    "rank_device",
    "run_ranked",
]

_STOP = "STOP"
_DEFAULT_TIMEOUT_S = 24 * 3600


class RankFailed(StvsrError):
    """This rank stops because another one failed (``quiet``: only rank 0 says so)."""

    def __init__(self, message: str, *, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = quiet


# --------------------------------------------------------------------------------------------
# Launch environment
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process stands: ``rank`` of ``world``, ``local_rank`` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    launcher: str = "none"  # "torchrun", "slurm" or "none"
    master_addr: str | None = None
    master_port: int | None = None


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise StvsrError(f"{name}={value!r} is not a whole number") from None


def expand_nodelist(nodelist: str) -> list[str]:
    """Slurm's compressed host list (``gpu[01-03,07],login1``) as host names."""
    hosts: list[str] = []
    for m in re.finditer(r"([^,\[]+)(?:\[([^\]]*)\])?([^,]*)", nodelist):
        prefix, ranges, suffix = m.group(1), m.group(2), m.group(3)
        if ranges is None:
            hosts.append(prefix + suffix)
            continue
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            if not hi:
                hosts.append(f"{prefix}{lo}{suffix}")
                continue
            for k in range(int(lo), int(hi) + 1):
                hosts.append(f"{prefix}{k:0{len(lo)}d}{suffix}")
    return hosts


def launch_env(environ: Mapping[str, str] | None = None) -> LaunchEnv:
    """The rank layout from torchrun's variables, else from an ``srun`` step's, else one
    process."""
    env = os.environ if environ is None else environ
    if env.get("WORLD_SIZE") and env.get("RANK"):
        return LaunchEnv(_int(env, "RANK", 0), _int(env, "WORLD_SIZE", 1),
                         _int(env, "LOCAL_RANK", 0), "torchrun",
                         env.get("MASTER_ADDR") or None, _int(env, "MASTER_PORT", 0) or None)
    # a batch script also has SLURM_PROCID / SLURM_NTASKS, but only an srun step has a step id
    if env.get("SLURM_PROCID") and (env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID")):
        world = _int(env, "SLURM_STEP_NUM_TASKS", 0) or _int(env, "SLURM_NTASKS", 1)
        addr = env.get("MASTER_ADDR") or None
        if addr is None:
            nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or ""
            hosts = expand_nodelist(nodes) if nodes else []
            addr = hosts[0] if hosts else "127.0.0.1"
        port = _int(env, "MASTER_PORT", 0)
        if not port:
            job = _int(env, "SLURM_JOB_ID", 0) or _int(env, "SLURM_JOBID", 0)
            step = _int(env, "SLURM_STEP_ID", 0) if env.get("SLURM_STEP_ID", "").isdigit() else 0
            port = 15000 + (job * 7 + step) % 20000
        return LaunchEnv(_int(env, "SLURM_PROCID", 0), world, _int(env, "SLURM_LOCALID", 0),
                         "slurm", addr, port)
    return LaunchEnv()


def rank_device(device: str, local_rank: int) -> str:
    """``cuda`` → ``cuda:LOCAL_RANK`` (``cuda:0`` when only one GPU is visible to this task, as
    with ``srun --gpus-per-task 1``); any other device as given."""
    if device != "cuda":
        return device
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise StvsrError("--device cuda but no CUDA device is visible to this rank")
    if local_rank < count:
        return f"cuda:{local_rank}"
    if count == 1:
        return "cuda:0"
    raise StvsrError(f"LOCAL_RANK {local_rank} but only {count} GPUs are visible on "
                     f"{socket.gethostname()}; start at most {count} processes per machine")


# --------------------------------------------------------------------------------------------
# The scheduler of many ranks
# --------------------------------------------------------------------------------------------


class DistributedScheduler:
    """Process group, barriers and segment claims of one ranked ``stvsr upscale``: the
    :class:`~stvsr.infer.scheduler.Scheduler` of many processes.

    Three barriers, in this order on every rank: *prepared* (rank 0 opened the work folder and
    scanned the input), *checked* (every rank sees the folder and the same manifest) and *done*
    (no segment left). Each carries one status code per rank, so a rank that fails tells the
    others at the barrier they wait at (:meth:`abort`) instead of leaving them hanging.
    """

    #: Name prefix of the token file rank 0 writes for the others to find.
    token_prefix = ".rank0-token-"

    def __init__(self, env: LaunchEnv, device: str, *, timeout_s: float | None = None) -> None:
        import torch
        import torch.distributed as dist

        self.env, self.rank, self.world = env, env.rank, env.world
        self.is_main = env.rank == 0
        self.host = socket.gethostname()
        self.device = device
        if env.launcher == "slurm":  # init_process_group("env://") reads these
            os.environ.update(RANK=str(env.rank), WORLD_SIZE=str(env.world),
                              LOCAL_RANK=str(env.local_rank), MASTER_ADDR=str(env.master_addr),
                              MASTER_PORT=str(env.master_port))
        backend = os.environ.get("STVSR_DIST_BACKEND") or (
            "nccl" if device.startswith("cuda") else "gloo")
        self.tensor_device = torch.device(device) if backend == "nccl" else torch.device("cpu")
        if backend == "nccl":
            torch.cuda.set_device(self.tensor_device)
        if timeout_s is None:
            timeout_s = float(os.environ.get("STVSR_DIST_TIMEOUT") or _DEFAULT_TIMEOUT_S)
        self._dist = dist
        self._owns_group = not dist.is_initialized()
        if self._owns_group:
            try:
                dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
            except (RuntimeError, ValueError) as exc:
                raise StvsrError(
                    f"rank {self.rank} of {self.world} could not join the others ({backend} at "
                    f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}): "
                    f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        self.stage = 0  # barriers passed
        self.failed = False  # a barrier reported a failure: no further barriers
        self.work: WorkDir | None = None
        self.claimed: list[int] = []
        self._counted: set[int] = set()  # segments already shown on rank 0's progress bar
        self._encoded_by: dict[int, int] = {}

    # ---- barriers ---------------------------------------------------------------------------
    def _barrier(self, code: int, value: int = 0) -> tuple[dict[int, int], int]:
        """All ranks meet; returns ``{rank: code}`` of the ranks with a non-zero code and rank
        0's ``value``."""
        import torch

        t = torch.zeros(self.world + 1, dtype=torch.int64, device=self.tensor_device)
        t[self.rank] = code
        if self.is_main:
            t[self.world] = value
        self.stage += 1
        try:
            self._dist.all_reduce(t)
        except Exception as exc:  # noqa: BLE001 - a peer died or the barrier timed out
            self.failed = True
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StvsrError(
                f"rank {self.rank} lost contact with the other ranks ({text}); run the same "
                "command again to resume") from None
        got = t.cpu().tolist()
        bad = {r: int(c) for r, c in enumerate(got[:-1]) if c}
        if bad:
            self.failed = True
        return bad, int(got[-1])

    def _others_failed(self, bad: dict[int, int], what: str) -> RankFailed:
        ranks = ", ".join(str(r) for r in sorted(bad))
        where = f"; finished segments are kept in {self.work.path}" if self.work else ""
        many = len(bad) > 1
        return RankFailed(
            f"rank{'s' if many else ''} {ranks} failed {what} (see {'their' if many else 'its'} "
            f"message){where}; run the same command again to resume",
            quiet=not self.is_main)

    def abort(self) -> dict[int, int] | None:
        """This rank failed: ask the others to stop claiming and fail the barrier they wait at
        (or will reach next). Safe to call at any point; does nothing after the last barrier.
        Returns the ranks that failed at that barrier (None: no barrier was held)."""
        if self.work is not None and self.work.path.is_dir():
            try:
                (self.work.path / _STOP).write_text(f"rank {self.rank} on {self.host}\n")
            except OSError:
                pass
        if self.failed or self.stage >= 3:
            return None
        try:
            return self._barrier(1)[0]
        except StvsrError:
            return None

    def close(self) -> None:
        if self._owns_group and self._dist.is_initialized():
            try:
                self._dist.destroy_process_group()
            except Exception:  # noqa: BLE001 - nothing left to do about it
                pass

    # ---- stage 1 and 2: the work folder -------------------------------------------------------
    def prepare(
        self, work: WorkDir, key: dict[str, Any],
        scan: Callable[[], tuple[list[Fraction], list[float]]],
    ) -> tuple[bool, list[Fraction], list[float]]:
        """Rank 0 opens (or resumes) the work folder and scans; every rank checks that it sees
        the folder and gets the same manifest. Returns ``(resumed, times, distances)``."""
        work.shared = {"rank": self.rank, "host": self.host, "pid": os.getpid()}
        self.work = work
        resumed, token = False, 0
        times: list[Fraction] = []
        dists: list[float] = []
        if self.is_main:
            resumed = work.open(key, refuse="runtime")
            for stale in list(work.path.glob("seg*.claim")) + [work.path / _STOP]:
                stale.unlink(missing_ok=True)
            for old in work.path.glob(self.token_prefix + "*"):
                old.unlink(missing_ok=True)
            times, dists = scan()
            token = secrets.randbits(62)
            (work.path / f"{self.token_prefix}{token:016x}").write_text(f"{self.host}\n")
        bad, token = self._barrier(0, token)
        if bad:
            raise self._others_failed(bad, "before the start")
        code = 0
        if not self.is_main:
            if not (work.path / f"{self.token_prefix}{token:016x}").is_file():
                code = 1
            else:
                try:
                    manifest = json.loads(work.manifest_path.read_text())
                except (OSError, ValueError):
                    manifest = None
                if (not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION
                        or _canon(manifest.get("key")) != _canon(key)):
                    code = 2
                else:
                    work.manifest = manifest
                    scanned = work.load_scan()
                    if scanned is None:
                        code = 2
                    else:
                        times, dists = scanned
        bad, _ = self._barrier(code)
        if self.is_main:
            for old in work.path.glob(self.token_prefix + "*"):
                old.unlink(missing_ok=True)
        if bad:
            if not self.is_main:
                raise RankFailed("stopped: see rank 0's message", quiet=True)
            lines = []
            hidden = sorted(r for r, c in bad.items() if c == 1)
            differ = sorted(r for r, c in bad.items() if c == 2)
            if hidden:
                lines.append(
                    f"the work folder {work.path} is not on a filesystem every rank sees: "
                    f"rank{'s' if len(hidden) > 1 else ''} {', '.join(map(str, hidden))} cannot "
                    f"see the file rank 0 ({self.host}) wrote there; put the output on a shared "
                    "filesystem (NFS, Lustre, ...)")
            if differ:
                lines.append(
                    f"rank{'s' if len(differ) > 1 else ''} {', '.join(map(str, differ))} see a "
                    "different input file (path, size or modification time) or other options "
                    "than rank 0; give every rank the same command and the same shared input")
            if not lines:
                raise self._others_failed(bad, "at the start")
            raise VideoError("; ".join(lines))
        return resumed, times, dists

    # ---- segments ----------------------------------------------------------------------------
    def claim(self, index: int, bar: Any = None) -> bool:
        """Claim segment ``index`` for this rank (False: another rank has it, or the run is
        stopping). On rank 0, ``bar`` also catches up with the other ranks' finished segments."""
        assert self.work is not None
        if bar is not None:
            self.catch_up(bar)
        if (self.work.path / _STOP).exists():
            return False
        path = self.work.path / f"seg{index:06d}.claim"
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise VideoError(f"cannot write {path} ({exc.strerror})") from None
        with os.fdopen(fd, "w") as f:
            json.dump({"rank": self.rank, "host": self.host, "pid": os.getpid(),
                       "time": time.time()}, f)
        self.claimed.append(index)
        self._counted.add(index)  # this rank's own frames reach the bar as they are written
        return True

    def catch_up(self, bar: Any) -> None:
        """Add the frames of segments other ranks finished since the last call to ``bar``."""
        if not self.is_main or self.work is None or getattr(bar, "mode", "none") == "none":
            return
        for path in self.work.path.glob("seg*.done"):
            index = int(path.name[3:-5])
            if index in self._counted:
                continue
            try:
                frames = int(json.loads(path.read_text())["frames"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            self._counted.add(index)
            bar.update(frames)

    def finish(self, work: WorkDir, indices: list[int], suffix: str, bar: Any = None) -> bool:
        """Last barrier: every rank is out of segments. Rank 0 folds the markers into the
        manifest, checks that every segment is there and returns True (go on and join); the
        other ranks return False."""
        bad, _ = self._barrier(0)
        if bad:
            raise self._others_failed(bad, "while restoring segments")
        if not self.is_main:
            return False
        if bar is not None:
            self.catch_up(bar)
        for index, info in work.merge_markers().items():
            self._encoded_by[index] = int(info.get("rank", 0))
        missing = [i for i in indices if not work.is_done(i, suffix)]
        if missing:
            raise VideoError(
                f"segments {missing[:5]}{' ...' if len(missing) > 5 else ''} are missing from "
                f"{work.path} after every rank finished; run the same command again")
        return True

    def report(self) -> dict[str, Any]:
        """For rank 0's summary: ranks and how many segments each rank encoded in this run."""
        per_rank: dict[int, int] = {}
        for rank in self._encoded_by.values():
            per_rank[rank] = per_rank.get(rank, 0) + 1
        return {"ranks": self.world, "segments_by_rank": per_rank}


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


# --------------------------------------------------------------------------------------------
# Command line entry
# --------------------------------------------------------------------------------------------


def run_ranked(args: Any, env: LaunchEnv,
               run: Callable[[Any, DistributedScheduler], None]) -> None:
    """Run ``run(args, scheduler)`` as rank ``env.rank`` of ``env.world``: the rank's own
    device, quiet on every rank but 0, the process group closed afterwards."""
    args.rank = env.rank
    args.device = rank_device(args.device, env.local_rank)
    if env.rank:
        args.quiet, args.progress = True, "none"
        warnings.simplefilter("ignore")  # rank 0 already says it
    coord = DistributedScheduler(env, args.device)
    try:
        run(args, coord)
    except StvsrError as exc:
        failed = coord.abort()
        if env.rank and not getattr(exc, "quiet", False):
            if failed is not None and 0 in failed:
                exc.quiet = True  # type: ignore[attr-defined]  # rank 0 failed too and says so
            else:
                raise StvsrError(f"rank {env.rank} on {coord.host}: {exc}") from None
        raise
    except BaseException:
        coord.abort()
        raise
    finally:
        coord.close()
        sys.stderr.flush()
