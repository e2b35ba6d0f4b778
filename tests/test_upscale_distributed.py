"""``stvsr upscale`` on two CPU processes (torchrun, and an srun-like launch): the same frames as
one process, every segment encoded once, a killed rank resumed, an unshared work folder refused.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch.distributed as dist

from stvsr.cli import main
from stvsr.data.video import VideoReader
from stvsr.errors import StvsrError
from stvsr.infer.distributed import expand_nodelist, launch_env, rank_device

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("_dist_upscale.py")
FRAMES, SEGMENT = 16, 3  # 6 segments
ARGS = ["--model", "stvsr-bicubic", "--codec", "ffv1", "--segment-frames", str(SEGMENT),
        "--no-scene-detect"]

needs_gloo = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


# ---- launch environment (no processes) -----------------------------------------------------


def test_launch_env_torchrun_slurm_and_none() -> None:
    env = launch_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
                      "SLURM_PROCID": "5", "SLURM_STEP_ID": "0"})
    assert (env.rank, env.world, env.local_rank, env.launcher) == (3, 8, 1, "torchrun")
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "99", "SLURM_STEP_NUM_TASKS": "8",
             "SLURM_LOCALID": "1", "SLURM_STEP_ID": "2", "SLURM_JOB_ID": "4242",
             "SLURM_STEP_NODELIST": "gpu[07-09,11],cpu1"}
    env = launch_env(slurm)
    assert (env.rank, env.world, env.local_rank, env.launcher) == (5, 8, 1, "slurm")
    assert env.master_addr == "gpu07" and 1024 < env.master_port < 65536
    assert launch_env({**slurm, "MASTER_ADDR": "head", "MASTER_PORT": "1234"}).master_addr == "head"
    # a batch script (no step id) is one process even though it has SLURM_PROCID / SLURM_NTASKS
    batch = {k: v for k, v in slurm.items() if k not in ("SLURM_STEP_ID", "SLURM_STEP_NUM_TASKS")}
    assert launch_env(batch).world == 1
    assert launch_env({}).world == 1
    assert expand_nodelist("a[1-3],b,c[08-10]x") == ["a1", "a2", "a3", "b", "c08x", "c09x", "c10x"]


def test_rank_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    assert rank_device("cpu", 3) == "cpu" and rank_device("cuda:1", 0) == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert rank_device("cuda", 1) == "cuda:1"
    with pytest.raises(StvsrError, match="only 2 GPUs"):
        rank_device("cuda", 2)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # srun --gpus-per-task 1
    assert rank_device("cuda", 3) == "cuda:0"


# ---- end to end ------------------------------------------------------------------------------


def _write_clip(path: Path, n: int = FRAMES, w: int = 64, h: int = 48) -> None:
    """Smooth frames with a moving square; x264 with a keyframe every 4 frames (ranks seek)."""
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast", "g": "4", "keyint_min": "4"}
        for k in range(n):
            img = np.stack([40 + 100 * xx / w, 60 + 3 * k + 0 * xx, 80 + 60 * yy / h], axis=-1)
            img[10:20, 2 + 3 * k:12 + 3 * k] = 250
            f = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            f.pts = k
            c.mux(s.encode(f.reformat(format="yuv420p")))
        c.mux(s.encode(None))


def _decode(path: Path) -> tuple[list[np.ndarray], list[Fraction]]:
    r = VideoReader(path, high_bit_depth=True)
    frames, times = [], []
    for f in r:
        frames.append(f.rgb)
        times.append(f.time)
    return frames, times


def _env(tmp: Path, **hooks: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC_", "MASTER_"))
           and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    paths = [str(ROOT / "src"), str(ROOT / "tests"), env.get("PYTHONPATH", "")]
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(p for p in paths if p),
               STVSR_TEST_ENCODE_LOG=str(tmp / "encodes.log"), **hooks)
    return env


def _torchrun(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", str(WORKER), "upscale", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _srun_like(args: list[str], env: dict[str, str]) -> list[tuple[int, str]]:
    """Two processes with the variables an ``srun -n 2`` step gives them (no torchrun)."""
    port = str(_free_port())
    procs = []
    for rank in range(2):
        e = dict(env, SLURM_PROCID=str(rank), SLURM_NTASKS="2", SLURM_STEP_NUM_TASKS="2",
                 SLURM_LOCALID=str(rank), SLURM_STEP_ID="0", SLURM_JOB_ID="77",
                 SLURM_STEP_NODELIST="localhost", MASTER_PORT=port)
        procs.append(subprocess.Popen([sys.executable, str(WORKER), "upscale", *args], env=e,
                                      stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True))
    out = []
    for p in procs:
        o, e = p.communicate(timeout=600)
        out.append((p.returncode, o + e))
    return out


def _encodes(tmp: Path) -> list[tuple[int, int]]:
    log = tmp / "encodes.log"
    lines = log.read_text().split() if log.exists() else []
    pairs = [(int(a), int(b)) for a, b in zip(lines[::2], lines[1::2], strict=True)]
    log.unlink(missing_ok=True)
    return pairs


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list, list]:
    """The input clip and the frames and times one process makes of it."""
    tmp = tmp_path_factory.mktemp("dist_ref")
    src = tmp / "in.mp4"
    _write_clip(src)
    out = tmp / "one.mkv"
    assert main(["upscale", str(src), str(out), *ARGS, "--quiet"]) == 0
    frames, times = _decode(out)
    assert len(frames) == 2 * FRAMES - 1
    return src, frames, times


def _same(out: Path, reference: tuple[Path, list, list]) -> None:
    frames, times = _decode(out)
    assert times == reference[2]
    assert len(frames) == len(reference[1])
    for k, (a, b) in enumerate(zip(frames, reference[1], strict=True)):
        assert np.array_equal(a, b), f"frame {k} differs"


@needs_gloo
def test_two_ranks_give_the_frames_of_one_process(tmp_path: Path, reference) -> None:
    out = tmp_path / "two.mkv"
    r = _torchrun([str(reference[0]), str(out), *ARGS, "--progress", "json"],
                  _env(tmp_path, STVSR_TEST_SEGMENT_SLEEP="0.3"))
    assert r.returncode == 0, r.stdout + r.stderr
    _same(out, reference)
    assert not out.with_name("two.mkv.stvsr-work").exists()
    encodes = _encodes(tmp_path)
    segs = sorted(i for _, i in encodes)
    assert segs == list(range(-(-FRAMES // SEGMENT))), encodes  # each segment encoded once
    assert {rank for rank, _ in encodes} == {0, 1}, encodes  # both ranks worked
    # only rank 0 reports, and its summary counts every rank's segments
    done = [json.loads(line) for line in (r.stdout + r.stderr).splitlines()
            if line.startswith("{") and '"stage": "done"' in line]
    assert len(done) == 1, r.stderr
    assert done[0]["ranks"] == 2 and done[0]["resumed_segments"] == 0
    by_rank = {int(k): v for k, v in done[0]["segments_by_rank"].items()}
    assert by_rank == {rank: sum(1 for r_, _ in encodes if r_ == rank) for rank in (0, 1)}


@needs_gloo
def test_killed_rank_is_resumed_by_a_rerun(tmp_path: Path, reference) -> None:
    out = tmp_path / "two.mkv"
    args = [str(reference[0]), str(out), *ARGS, "--quiet"]
    r = _torchrun(args, _env(tmp_path, STVSR_TEST_KILL_RANK="1", STVSR_TEST_SEGMENT_SLEEP="0.3"))
    assert r.returncode != 0, r.stdout + r.stderr
    assert not out.exists()
    work = out.with_name("two.mkv.stvsr-work")
    first = _encodes(tmp_path)
    killed = [i for rank, i in first if rank == 1]
    assert len(killed) == 1  # rank 1 died in its first segment
    claim = json.loads((work / f"seg{killed[0]:06d}.claim").read_text())
    assert claim["rank"] == 1 and claim["pid"] > 0 and claim["host"]
    manifest = json.loads((work / "manifest.json").read_text())
    finished = {int(i) for i in manifest["done"]} | {
        int(p.name[3:-5]) for p in work.glob("seg*.done")}
    assert killed[0] not in finished
    # rerun as an srun step of two tasks: it resumes, redoing only what was not finished
    results = _srun_like(args, _env(tmp_path))
    assert [rc for rc, _ in results] == [0, 0], results
    assert results[1][1].strip() == ""  # rank 1 is quiet
    _same(out, reference)
    again = sorted(i for _, i in _encodes(tmp_path))
    assert again == sorted(set(range(-(-FRAMES // SEGMENT))) - finished)
    assert not work.exists()


@needs_gloo
def test_work_folder_every_rank_cannot_see_is_one_error(tmp_path: Path, reference) -> None:
    out = tmp_path / "two.mkv"
    r = _torchrun([str(reference[0]), str(out), *ARGS, "--quiet"],
                  _env(tmp_path, STVSR_TEST_BLIND_RANK="1"))
    assert r.returncode != 0
    errors = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stdout + r.stderr
    assert "not on a filesystem every rank sees" in errors[0] and "rank 1 " in errors[0]
    assert not out.exists() and _encodes(tmp_path) == []
