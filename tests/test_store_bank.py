"""The frozen-store bank (train/store_bank.py): it computes what the model computes, its crops
line up in space and time, its batches are a function of the step, and training on it resumes
bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import randomize_params, write_panning_clips

from stvsr.data.datasets import DegradationSpec, VideoClipDataset, folder_clips
from stvsr.data.degradations import degrade_bi
from stvsr.models.sfnet_s import SFNetS
from stvsr.train.config import config_from_dict
from stvsr.train.store_bank import BankBatch, StoreBank, frozen_pass, head_window
from stvsr.train.trainer import Trainer

TINY = {"num_feat": 8, "num_block": 1, "mid_feat": 8, "mid_block": 1}


def tiny_model(seed: int = 0) -> SFNetS:
    torch.manual_seed(seed)
    return randomize_params(SFNetS(**TINY), seed)  # the zero-initialised head layers too


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    # 11 frames of 64 x 96 (LR 16 x 24), panning 4 px per frame
    return write_panning_clips(tmp_path_factory.mktemp("bank_clips"), 2, 11, (16, 24), step=4)


def dataset(root: Path, **kw) -> VideoClipDataset:
    args = {"mode": "stvsr", "num_frames": 3, "lr_patch": 8, "scale": 4,
            "degradation": DegradationSpec("bi"), "intervals": (1, 2), "flip": True,
            "transpose": True, "reverse": True, "seed": 3}
    return VideoClipDataset(folder_clips(root), **{**args, **kw})


def test_whole_sequence_window_is_the_model_forward() -> None:
    """Frozen pass + head over a whole sequence = ``model.forward`` (float64): the bank runs the
    model's computation, with the distant entries of ``i-1`` and ``i+2``."""
    model = tiny_model().double()
    x = torch.rand(1, 5, 3, 32, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
        feat, restored, flow, mask = frozen_pass(model, x[0])
        gt = torch.zeros(1, 9, 3, 128, 160, dtype=torch.float64)
        out = head_window(model, BankBatch(x, feat[None], restored[None], flow[None],
                                           mask[None], gt))
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    # the new frames depend on the distant entries: dropping them changes the output
    model.use_df = False
    with torch.no_grad():
        alone = head_window(model, BankBatch(x, feat[None], restored[None], flow[None],
                                             mask[None], gt))
    assert (alone[:, 1::2] - ref[:, 1::2]).abs().max() > 1e-4


def test_crops_line_up_with_the_targets(clips: Path) -> None:
    """LR crops are the BI downscale of the even HR targets, and the odd targets lie halfway
    in time (the clip pans at a constant speed)."""
    ds = dataset(clips, flip=False, transpose=False, reverse=False)
    bank = StoreBank(tiny_model(), ds, batch_size=4, seed=0, pool=2, refresh=2, max_inputs=4)
    b = bank.batch(5)
    n, p = 3, 8
    assert b.lr.shape == (4, n, 3, p, p) and b.gt.shape == (4, 2 * n - 1, 3, 4 * p, 4 * p)
    assert b.feat.shape == (4, n, 8, p, p) and b.flow.shape == (4, n - 1, 4, 4 * p, 4 * p)
    down = degrade_bi(b.gt[:, 0::2].reshape(-1, 3, 4 * p, 4 * p), 4).reshape(b.lr.shape)
    inner = (slice(None), slice(None), slice(None), slice(2, -2), slice(2, -2))
    torch.testing.assert_close(down[inner], b.lr[inner], rtol=0, atol=1e-5)
    # the middle target equals the average pan of its neighbours: columns shift evenly
    g = b.gt[0]
    step = [int(torch.argmin(torch.stack([(g[k + 1, :, :, 8:24] - g[k, :, :, 8 - d:24 - d])
                                           .abs().mean() for d in range(8)])))
            for k in range(2)]
    assert step[0] == step[1] > 0


def test_batches_are_a_function_of_the_step(clips: Path) -> None:
    ds = dataset(clips)
    rolled = StoreBank(tiny_model(), ds, batch_size=3, seed=7, pool=2, refresh=2, max_inputs=5)
    for s in range(7):
        b = rolled.batch(s)
    fresh = StoreBank(tiny_model(), ds, batch_size=3, seed=7, pool=2, refresh=2, max_inputs=5)
    c = fresh.batch(6)
    for name in ("lr", "feat", "restored", "flow", "mask", "gt"):
        assert torch.equal(getattr(b, name), getattr(c, name)), name
    assert len(rolled.resident) == 2 and sorted(rolled.resident) == [3, 4]
    other = StoreBank(tiny_model(), ds, batch_size=3, seed=8, pool=2, refresh=2, max_inputs=5)
    assert not torch.equal(other.batch(6).gt, c.gt)


def test_bank_step_equals_the_plain_step(clips: Path) -> None:
    """The loss and gradients of a bank step equal those of recomputing the frozen parts for
    the same crops (so keeping them changes nothing but the time)."""
    ds = dataset(clips)
    model = tiny_model()
    bank = StoreBank(model, ds, batch_size=2, seed=1, pool=3, refresh=1, max_inputs=4)
    for s in range(4):
        b = bank.batch(s)
    seqs = list(bank.resident.values())
    # plain: recompute the frozen pass of every resident sequence, find each crop in it
    recomputed = {q.key: frozen_pass(model, q.lr) for q in seqs}
    for q in seqs:
        for kept, fresh in zip((q.feat, q.restored, q.flow, q.mask), recomputed[q.key],
                               strict=True):
            assert torch.equal(kept, fresh)
    loss = torch.nn.functional.l1_loss(head_window(model, b), b.gt)
    loss.backward()
    grads = [p.grad.clone() for p in model.head.parameters()]
    assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def bank_cfg(root: Path, out: Path, steps: int) -> dict:
    return {
        "model": {"preset": "sfnet-s-untrained", "overrides": dict(TINY)},
        "data": {"type": "folder", "root": str(root), "mode": "stvsr", "num_frames": 3,
                 "lr_patch": 8, "batch_size": 2, "intervals": [1, 2], "reverse": True},
        "schedule": {"periods": [10], "warmup_steps": 1},
        "freeze": {"steps": 1000, "train_only": ["head"]},
        "bank": {"enabled": True, "pool": 2, "refresh": 2, "max_inputs": 4},
        "train": {"total_steps": steps, "log_every": 1, "ckpt_every": 100, "ema_decay": 0.5,
                  "device": "cpu", "out_dir": str(out)},
    }


def test_bank_training_resumes_bit_for_bit(clips: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(bank_cfg(clips, tmp_path / "a", 5))
    full = Trainer(cfg, tmp_path / "a", progress=False)
    start = {k: v.clone() for k, v in full.module.state_dict().items()}
    hist_a = full.fit()["history"]
    changed = {k for k, v in full.module.state_dict().items() if not torch.equal(v, start[k])}
    assert changed and all(k.startswith("head.") for k in changed)
    first = Trainer(cfg, tmp_path / "b", progress=False)
    first.fit(max_steps=3)
    del first
    resumed = Trainer(cfg, tmp_path / "b", progress=False)
    assert resumed.resume() and resumed.step == 3
    hist_b = resumed.fit()["history"]
    assert hist_b == hist_a[3:]
    for (k, pa), pb in zip(full.module.state_dict().items(),
                           resumed.module.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), k
    assert np.isfinite([v for _, v in hist_a]).all()


def test_bank_refuses_what_it_cannot_train(clips: Path) -> None:
    from stvsr.errors import StvsrError

    with pytest.raises(StvsrError, match="sfnet-s"):
        StoreBank(torch.nn.Conv2d(3, 3, 1), dataset(clips), batch_size=1, seed=0)
    with pytest.raises(StvsrError, match="lr_patch"):
        StoreBank(tiny_model(), dataset(clips, lr_patch=None), batch_size=1, seed=0)


def test_channels_last_training_is_the_same_training(clips: Path, tmp_path: Path) -> None:
    """``train.channels_last`` changes the weights' memory layout only: the same steps give the
    same losses and weights within float tolerance, and the checkpoint loads into a model in
    the default layout."""
    from safetensors.torch import load_file

    runs = {}
    for cl in (False, True):
        raw = bank_cfg(clips, tmp_path / str(cl), 4)
        raw["train"]["channels_last"] = cl
        raw["train"]["ckpt_every"] = 4
        tr = Trainer(config_from_dict(raw), tmp_path / str(cl), progress=False)
        conv = next(p for p in tr.module.head.parameters() if p.dim() == 4)
        assert conv.is_contiguous(memory_format=torch.channels_last) == cl
        runs[cl] = (tr.fit()["history"], tr.module.state_dict())
    (h0, s0), (h1, s1) = runs[False], runs[True]
    np.testing.assert_allclose([v for _, v in h1], [v for _, v in h0], rtol=1e-4, atol=1e-6)
    # Adam turns the rounding differences of near-zero gradients (another conv algorithm for
    # the other layout) into up to a whole step (lr 4e-4) on a few weights: 0.3% of conv_hr's
    # moved by up to 2.8e-4 on an AVX2 EPYC. So: every weight within two steps, 99% within float
    # tolerance.
    for k, v in s0.items():
        diff = (s1[k].float() - v.float()).abs()
        assert float(diff.max()) <= 2 * 4e-4, k
        loose = diff > 1e-5 + 1e-4 * v.float().abs()
        assert float(loose.float().mean()) < 0.01, k
    ckpt = next((tmp_path / "True" / "checkpoints").glob("step_*[0-9].safetensors"))
    saved = load_file(str(ckpt))
    model = SFNetS(**TINY)
    model.load_state_dict(saved, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k].to(v.dtype)), k
