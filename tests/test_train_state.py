"""Training state kept beside shipped weights (train/state.py): a run that continues it takes
the step the original run would have taken, a state never continues weights it was not saved
with, and the ledger counts steps on from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _helpers import write_panning_clips

from stvsr.errors import CheckpointError
from stvsr.train.config import config_from_dict
from stvsr.train.ledger import summarize_run
from stvsr.train.state import export_train_state, read_lineage, state_beside
from stvsr.train.trainer import Trainer
from stvsr.weights import sha256_file

TINY = {"num_feat": 8, "num_block": 1, "mid_feat": 8, "mid_block": 1}


def _cfg(clips: Path, **model) -> dict:
    return {
        "name": "tiny_state",
        "model": {"preset": "sfnet-s-untrained", "overrides": TINY, **model},
        "data": {"type": "folder", "root": str(clips), "mode": "stvsr", "num_frames": 3,
                 "lr_patch": 8, "batch_size": 2},
        "freeze": {"steps": 1000, "train_only": ["head"]},
        "schedule": {"type": "constant", "warmup_steps": 0},
        "optim": {"lr": 1e-3},
        "train": {"total_steps": 3, "log_every": 1, "ckpt_every": 3, "ema_decay": 0.5,
                  "device": "cpu", "seed": 3},
    }


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> dict[str, Path]:
    """A 3-step run, its EMA checkpoint as the 'shipped' file and its state beside it."""
    base = tmp_path_factory.mktemp("state")
    clips = write_panning_clips(base / "clips", 2, 9, (16, 24), step=4)
    run = base / "run"
    Trainer(config_from_dict(_cfg(clips)), run, progress=False).fit()
    ckpt = run / "checkpoints" / "step_0000003.pt"
    weights = base / "ship" / "head.safetensors"
    weights.parent.mkdir()
    weights.write_bytes((run / "checkpoints" / "step_0000003_ema.safetensors").read_bytes())
    tr = Trainer(config_from_dict(_cfg(clips)), base / "scratch", progress=False)
    state = export_train_state(tr.module, ckpt, state_beside(weights),
                               weights_sha256=sha256_file(weights), steps=3, samples=6)
    return {"clips": clips, "run": run, "ckpt": ckpt, "weights": weights, "state": state}


def _step(tr: Trainer, batch: dict) -> dict[str, torch.Tensor]:
    tr.forward_backward(batch)
    tr.optimizer_step()
    return {k: v.detach().clone() for k, v in tr.module.named_parameters() if v.requires_grad}


def test_continued_run_takes_the_original_runs_next_step(shipped, tmp_path: Path) -> None:
    clips = shipped["clips"]
    original = Trainer(config_from_dict(_cfg(clips)), shipped["run"], progress=False)
    assert original.resume(shipped["ckpt"])
    cont = Trainer(config_from_dict(_cfg(clips, init=str(shipped["weights"]),
                                         init_state="auto")), tmp_path / "cont", progress=False)
    # the raw weights continue; the EMA copy is the shipped file
    for (k, a), (_, b) in zip(original.module.state_dict().items(),
                              cont.module.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert not all(torch.equal(a, b) for a, b in zip(cont.ema.state_dict().values(),
                                                     cont.module.state_dict().values(),
                                                     strict=True))
    batch = next(iter(original.make_loader()))
    a, b = _step(original, batch), _step(cont, batch)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-7, msg=k)
    assert read_lineage(tmp_path / "cont") == {"steps": 3, "samples": 6,
                                               "source": str(shipped["state"])}


def test_fresh_optimizer_takes_another_step(shipped, tmp_path: Path) -> None:
    """The check above can fail: without the moments the first Adam step is different."""
    clips = shipped["clips"]
    original = Trainer(config_from_dict(_cfg(clips)), shipped["run"], progress=False)
    assert original.resume(shipped["ckpt"])
    fresh = Trainer(config_from_dict(_cfg(clips, init=str(shipped["ckpt"].with_suffix(
        ".safetensors")))), tmp_path / "fresh", progress=False)
    batch = next(iter(original.make_loader()))
    a, b = _step(original, batch), _step(fresh, batch)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) > 1e-5


def test_state_pairs_only_with_its_weights(shipped, tmp_path: Path) -> None:
    other = tmp_path / "other.safetensors"
    other.write_bytes(shipped["ckpt"].with_suffix(".safetensors").read_bytes())
    (tmp_path / "other.train.pt").write_bytes(shipped["state"].read_bytes())
    clips = shipped["clips"]
    # auto: a state saved with other weights is left aside (fresh optimizer, nothing recorded)
    tr = Trainer(config_from_dict(_cfg(clips, init=str(other), init_state="auto")),
                 tmp_path / "auto", progress=False)
    assert not tr.optimizer.state and read_lineage(tmp_path / "auto") == {}
    # explicit: a one-line error
    with pytest.raises(CheckpointError, match="other weights"):
        Trainer(config_from_dict(_cfg(clips, init=str(other),
                                      init_state=str(tmp_path / "other.train.pt"))),
                tmp_path / "explicit", progress=False)
    with pytest.raises(CheckpointError, match="does not exist"):
        Trainer(config_from_dict(_cfg(clips, init=str(other),
                                      init_state=str(tmp_path / "missing.pt"))),
                tmp_path / "missing", progress=False)


def test_ledger_counts_on_from_the_state(shipped, tmp_path: Path) -> None:
    out = tmp_path / "cont"
    Trainer(config_from_dict(_cfg(shipped["clips"], init=str(shipped["weights"]),
                                  init_state="auto")), out, progress=False).fit()
    row = summarize_run(out)
    assert (row["start_step"], row["end_step"], row["samples"]) == (3, 6, 6)
    assert "training state (3 steps)" in str(row["start"])
