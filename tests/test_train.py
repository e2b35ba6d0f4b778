"""Trainer: config validation, schedule, a few steps, bit-for-bit resume, freezing, Ctrl-C."""

from __future__ import annotations

import argparse
import csv
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import write_panning_clips

from stvsr.train.config import ConfigError, config_from_dict, load_config
from stvsr.train.schedule import cosine_restart_factor
from stvsr.train.trainer import StepSampler, Trainer

TINY_SFNET = {"num_feat": 8, "num_fe": 1, "num_ds": 1, "num_rec": 1, "fetch_frames": 2}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_panning_clips(tmp_path_factory.mktemp("train_clips"), 3, 7, (10, 12))


def tiny_cfg(root: Path, **sections) -> dict:
    cfg = {
        "model": {"preset": "sfnet-lite", "overrides": dict(TINY_SFNET)},
        "data": {"type": "folder", "root": str(root), "mode": "stvsr", "num_frames": 2,
                 "lr_patch": 4, "batch_size": 2, "reverse": True, "repeat": 2},
        "loss": {"structure_weight": 0.25},
        "schedule": {"periods": [10], "warmup_steps": 1},
        "train": {"total_steps": 4, "log_every": 1, "ckpt_every": 100, "ema_decay": 0.5,
                  "device": "cpu"},
    }
    for sec, values in sections.items():
        cfg.setdefault(sec, {}).update(values)
    return cfg


def test_config_errors_are_one_line(tmp_path: Path) -> None:
    good = tiny_cfg(tmp_path)
    bad_cases = [
        ({**good, "optim": {"lrr": 1}}, "optim.lrr"),
        ({**good, "optim": {"lr": "fast"}}, "optim.lr"),
        ({**good, "loss": {"type": "huber"}}, "loss.type"),
        ({**good, "schedule": {"periods": [5, 5], "restart_weights": [1]}}, "restart_weights"),
        ({**good, "freeze": {"steps": 5}}, "freeze"),
        ({**good, "optim": {"lr_mult": {"rec_d": -1}}}, "optim.lr_mult"),
        ({**good, "val": {"degradation": "bi+h264:crf=fast"}}, "val.degradation"),
        ({**good, "val": {"degradation": "bicubic"}}, "val.degradation"),
        ({"data": good["data"]}, "model.preset"),
    ]
    for data, needle in bad_cases:
        with pytest.raises(ConfigError) as info:
            config_from_dict(data, "x.yaml")
        assert needle in str(info.value) and "\n" not in str(info.value)
    cfg = config_from_dict(good, overrides=["optim.lr=1e-3", "train.seed=3"])
    assert cfg.optim.lr == 1e-3 and cfg.train.seed == 3
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.yaml")


def test_bf16_training_on_a_cpu_without_it_warns(data_root: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Emulated bf16 is ~40x slower than fp32: the trainer says so once, and how to avoid it."""
    import warnings

    cfg = config_from_dict(tiny_cfg(data_root, train={"precision": "bf16"}))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False,
                        raising=False)
    with pytest.warns(RuntimeWarning, match=r"emulated.*--set train.precision=fp32"):
        Trainer(cfg, tmp_path / "a", progress=False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True,
                        raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        Trainer(cfg, tmp_path / "b", progress=False)


def test_validation_degrades_with_the_configured_chain(tmp_path: Path, data_root: Path) -> None:
    """``val.degradation`` may be a chain (a model trained for compressed input is validated on
    compressed input); the same step validated on BI and on BI + H.264 CRF 45 scores lower on
    the encoded input."""
    scores = {}
    for name, chain in (("bi", "bi"), ("h264", "bi+h264:crf=45")):
        raw = tiny_cfg(data_root, val={"every": 1, "data": str(data_root), "max_frames": 7,
                                       "degradation": chain},
                       train={"total_steps": 1, "log_every": 1, "ckpt_every": 100,
                              "device": "cpu"})
        Trainer(config_from_dict(raw), tmp_path / name, progress=False).fit()
        with open(tmp_path / name / "val_log.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        scores[name] = float(rows[-1]["psnr_y"])
    assert scores["h264"] < scores["bi"] - 0.1, scores


def test_shipped_configs_validate() -> None:
    names = sorted(p.name for p in (REPO / "configs").glob("*.yaml"))
    assert {"edvr_m_reds.yaml", "edvr_m_wotsa_reds.yaml", "sfnet_vimeo.yaml",
            "edvr_m_cpu_smoke.yaml", "sfnet_lite_cpu.yaml", "sfnet_s_cpu.yaml"} <= set(names)
    for name in names:
        cfg = load_config(REPO / "configs" / name)
        assert cfg.train.total_steps > 0
    edvr = load_config(REPO / "configs" / "edvr_m_reds.yaml")
    assert edvr.schedule.periods == [50000, 100000, 150000, 150000, 150000]
    assert edvr.freeze.train_only == ["fusion"] and edvr.freeze.steps == 50000
    assert edvr.data.batch_size == 32 and edvr.data.lr_patch == 64


def test_cosine_restart_schedule() -> None:
    periods, weights = [10, 20], [1.0, 0.5]
    assert cosine_restart_factor(0, periods, weights, 0.0) == pytest.approx(1.0)
    assert cosine_restart_factor(5, periods, weights, 0.0) == pytest.approx(0.5)
    assert cosine_restart_factor(10, periods, weights, 0.0) == pytest.approx(0.5)  # restart
    assert cosine_restart_factor(20, periods, weights, 0.1) == pytest.approx(0.1 + 0.45 * 0.5)
    assert cosine_restart_factor(99, periods, weights, 0.1) == pytest.approx(0.1)


def test_step_sampler_shards_global_batch() -> None:
    single = list(StepSampler(10, 4, seed=1))
    parts = [list(StepSampler(10, 4, rank=r, world=2, seed=1)) for r in range(2)]
    for b in range(2):
        assert single[4 * b: 4 * b + 4] == parts[0][2 * b: 2 * b + 2] + parts[1][2 * b: 2 * b + 2]
    s = StepSampler(10, 4, seed=1)
    s.set_epoch(0, start_batch=1)
    assert list(s) == single[4:]
    assert len(list(StepSampler(3, 8, seed=0))) == 8  # small datasets repeat


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_train_few_steps_and_outputs(data_root: Path, tmp_path: Path) -> None:
    from stvsr import create_model

    cfg = config_from_dict(tiny_cfg(data_root))
    summary = Trainer(cfg, tmp_path, progress=False).fit()
    assert [s for s, _ in summary["history"]] == [1, 2, 3, 4]
    assert all(np.isfinite(v) for _, v in summary["history"])
    rows = _read_csv(tmp_path / "train_log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[0]["lr"]) == pytest.approx(4e-4)  # warm-up of one step, then cosine
    assert float(rows[1]["lr"]) < 4e-4
    for name in ("model.safetensors", "model_ema.safetensors",
                 "checkpoints/step_0000004.pt", "checkpoints/latest.txt"):
        assert (tmp_path / name).is_file(), name
    model = create_model("sfnet-lite", weights=tmp_path / "model.safetensors", **TINY_SFNET)
    out = model(torch.rand(1, 2, 3, 8, 8))
    assert out.shape == (1, 3, 3, 32, 32)


def test_loss_falls_on_a_fixed_batch(tmp_path: Path) -> None:
    """The trainer's step really learns: 30 steps on one fixed batch of smooth, learnable
    clips bring the loss of a tiny model far below its starting value (finite losses alone
    would not show that gradients reach the weights and the optimizer uses them)."""
    from stvsr.data.video import write_image

    yy, xx = np.mgrid[0:40, 0:48]
    for c in range(2):
        clip = tmp_path / "smooth" / f"clip{c}"
        clip.mkdir(parents=True)
        for t in range(5):
            img = np.stack([0.5 + 0.4 * np.sin((xx + 2 * t) / (5 + c) + k + yy / 9)
                            for k in range(3)], axis=-1)
            write_image(clip / f"{t:03d}.png", (img * 255).round().astype(np.uint8))
    cfg = config_from_dict(tiny_cfg(tmp_path / "smooth", data={"lr_patch": 6},
                                    train={"ema_decay": 0.0}))
    tr = Trainer(cfg, tmp_path / "out", progress=False)
    batch = next(iter(tr.make_loader()))
    for group in tr.optimizer.param_groups:
        group["lr"] = 2e-3  # constant: the schedule is not what is tested here
    losses = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many tiny convs: as fast, and no spin-waiting on a busy machine
    try:
        for _ in range(30):
            losses.append(float(tr.forward_backward(batch)))
            tr.optimizer_step()
    finally:
        torch.set_num_threads(threads)
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses  # measured: 0.127 -> 0.038
    assert max(losses[-5:]) < 0.6 * losses[0], losses


def test_resume_is_bit_for_bit(data_root: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(tiny_cfg(data_root, train={"total_steps": 5}))
    full = Trainer(cfg, tmp_path / "a", progress=False)
    hist_a = full.fit()["history"]
    first = Trainer(cfg, tmp_path / "b", progress=False)
    first.fit(max_steps=2)  # stop mid-run and mid-epoch (3 batches per epoch)
    del first
    resumed = Trainer(cfg, tmp_path / "b", progress=False)
    assert resumed.resume() and resumed.step == 2 and resumed.batch_in_epoch == 2
    hist_b = resumed.fit()["history"]
    assert hist_b == hist_a[2:]  # identical floats, not just close
    for (k, pa), pb in zip(full.module.state_dict().items(), resumed.module.state_dict().values()):
        assert torch.equal(pa, pb), k
    for pa, pb in zip(full.ema.parameters(), resumed.ema.parameters()):
        assert torch.equal(pa, pb)
    rows = _read_csv(tmp_path / "b" / "train_log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5]


def test_freeze_trains_only_matching_first(data_root: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(tiny_cfg(data_root, freeze={"steps": 1, "train_only": ["rec_d"]},
                                    train={"total_steps": 2, "ema_decay": 0.0}))
    tr = Trainer(cfg, tmp_path, progress=False)
    before = {k: v.clone() for k, v in tr.module.state_dict().items()}
    tr.fit(max_steps=1)
    after1 = tr.module.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after1[k])}
    assert changed and all(k.startswith("rec_d.") for k in changed)
    snap = {k: v.clone() for k, v in after1.items()}
    tr.fit()
    after2 = tr.module.state_dict()
    assert not torch.equal(snap["fe.main.0.weight"], after2["fe.main.0.weight"])


def test_lr_mult_gives_matching_parameters_their_own_rate(data_root: Path,
                                                          tmp_path: Path) -> None:
    cfg = config_from_dict(tiny_cfg(data_root, optim={"lr_mult": {"rec_d": 0.0, "fe": 0.5}},
                                    train={"total_steps": 2, "ema_decay": 0.0}))
    tr = Trainer(cfg, tmp_path, progress=False)
    before = {k: v.clone() for k, v in tr.module.state_dict().items()}
    tr.fit()
    after = tr.module.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and not any(k.startswith("rec_d.") for k in changed)
    assert any(k.startswith("fe.") for k in changed)
    rates = {g.get("name"): g["lr"] for g in tr.optimizer.param_groups}
    assert rates[None] > 0 and rates["rec_d"] == 0.0
    assert rates["fe"] == pytest.approx(0.5 * rates[None], rel=1e-3)  # the schedule scales both


def test_window_model_trains(data_root: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(tiny_cfg(
        data_root,
        model={"preset": "edvr-m", "overrides": {"num_feat": 8, "num_extract_block": 1,
                                                 "num_reconstruct_block": 1, "num_frame": 3}},
        data={"mode": "auto", "num_frames": 3},
        loss={"structure_weight": 0.0, "reduction": "sum", "eps": 1e-6},
        train={"total_steps": 2, "ema_decay": 0.0, "grad_clip": 10.0}))
    hist = Trainer(cfg, tmp_path, progress=False).fit()["history"]
    assert len(hist) == 2 and all(np.isfinite(v) for _, v in hist)


def test_interrupt_writes_checkpoint(data_root: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(tiny_cfg(data_root, train={"total_steps": 10, "ema_decay": 0.0}))

    class Interrupted(Trainer):
        def forward_backward(self, batch):
            if self.step == 1:
                os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C during step 2
            return super().forward_backward(batch)

    # Start from Python's usual handler even when this process inherited SIGINT ignored
    # (e.g. a CI job started in the background).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        tr = Interrupted(cfg, tmp_path, progress=False)
        with pytest.raises(KeyboardInterrupt):
            tr.fit()
        assert tr.step == 2
        assert (tmp_path / "checkpoints" / "latest.txt").read_text().strip() == "step_0000002"
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_cli_parsers(data_root: Path, tmp_path: Path) -> None:
    import yaml

    from stvsr.train.command import add_train_parsers

    parser = argparse.ArgumentParser()
    add_train_parsers(parser.add_subparsers(dest="command"))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_cfg(data_root)))
    args = parser.parse_args(["train", str(path), "--max-steps", "1", "--out",
                              str(tmp_path / "run"), "--quiet", "--set", "train.ema_decay=0"])
    args.handler(args)
    assert (tmp_path / "run" / "checkpoints" / "step_0000001.pt").is_file()
    args = parser.parse_args(["data", "prepare", str(tmp_path / "c"), "--no-videos"])
    assert args.handler.__name__ == "run_data" and args.clip_len == 30


def test_skip_short_leaves_out_clips_an_item_cannot_span(tmp_path: Path) -> None:
    """``data.skip_short``: clips shorter than one item at the shortest interval are left out
    (else drawing one is an error); none long enough is a one-line config error."""
    from stvsr.data.datasets import DataError
    from stvsr.train.builders import build_dataset

    write_panning_clips(tmp_path / "long", 1, 9, (8, 8))
    write_panning_clips(tmp_path / "short", 1, 5, (8, 8), seed=1)
    raw = {"model": {"preset": "basicvsr"},
           "data": {"type": "folder", "root": str(tmp_path), "mode": "sequence",
                    "num_frames": 4, "lr_patch": 4, "intervals": [2]},
           "schedule": {"periods": [10]}}
    ds = build_dataset(config_from_dict(raw), "sequence")
    assert len(ds.clips) == 2
    with pytest.raises(DataError, match="has 5 frames"):
        for i in range(len(ds)):
            ds[i]
    raw["data"]["skip_short"] = True
    ds = build_dataset(config_from_dict(raw), "sequence")
    assert [c.name for c in ds.clips] == ["long/clip0"]
    ds[0]
    raw["data"]["intervals"] = [3]  # an item spans 10 frames: no clip is long enough
    with pytest.raises(ConfigError, match="no clip has 10 frames"):
        build_dataset(config_from_dict(raw), "sequence")


def test_data_root_may_list_several_corpora(tmp_path: Path) -> None:
    """``data.root: [A, B]`` trains on the clips of both folders, A's first, each named
    relative to its own folder; a clip name found in both (their variant files would collide)
    and a list with a non-folder dataset type are one-line errors."""
    from stvsr.data.datasets import DataError
    from stvsr.train.builders import build_dataset

    write_panning_clips(tmp_path / "a", 2, 7, (8, 8))
    write_panning_clips(tmp_path / "b" / "more", 1, 7, (8, 8), seed=1)
    raw = {"model": {"preset": "basicvsr"},
           "data": {"type": "folder", "root": [str(tmp_path / "a"), str(tmp_path / "b")],
                    "mode": "sequence", "num_frames": 4, "lr_patch": 4},
           "schedule": {"periods": [10]}}
    ds = build_dataset(config_from_dict(raw), "sequence")
    assert [c.name for c in ds.clips] == ["clip0", "clip1", "more/clip0"]
    assert ds[len(ds) - 1]["gt"].shape[0] == 4
    raw["data"]["root"] = [str(tmp_path / "a"), str(tmp_path / "b" / "more")]
    with pytest.raises(DataError, match="'clip0' is in both") as info:
        build_dataset(config_from_dict(raw), "sequence")
    assert "\n" not in str(info.value)
    raw["data"]["type"] = "vimeo"
    with pytest.raises(ConfigError, match="only data.type folder"):
        config_from_dict(raw, "x.yaml")
