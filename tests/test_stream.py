"""One streaming path: the layout protocol, the ST-VSR protocols through ``restore_stream``, and
the one rounding rule of frame <-> tensor conversion."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from _helpers import TemporalBox, write_panning_clips
from torch import nn

from stvsr.data.degradations import degrade, modcrop
from stvsr.data.images import read_image
from stvsr.frames import frame_to_tensor, frames_to_tensor, tensor_to_frame, to_8bit, to_uint8
from stvsr.infer.defaults import CHUNKING, chunking
from stvsr.infer.layout import StreamLayout, layout_of
from stvsr.infer.runner import restore_stream
from stvsr.infer.segments import output_plan, plan_segments
from stvsr.metrics import frame_metrics

# --------------------------------------------------------------------------- toy models


class GlobalSpaceTime(nn.Module):
    """Toy ×2 space-time model whose every output depends on every input (a clip-wide mean),
    so any chunking of a clip would show in the numbers."""

    kind, scale = "spacetime", 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c, h, w = x.shape
        up = F.interpolate(x.flatten(0, 1), scale_factor=2, mode="bilinear",
                           align_corners=False).view(b, n, c, 2 * h, 2 * w)
        ctx = 0.2 * up.mean(1, keepdim=True)
        out = torch.empty(b, 2 * n - 1, c, 2 * h, 2 * w)
        out[:, 0::2] = 0.8 * up + ctx
        out[:, 1::2] = 0.4 * (up[:, :-1] + up[:, 1:]) + ctx
        return out


class LocalSpaceTime(nn.Module):
    """Toy space-time model: every output depends on the inputs at most 2 away from it."""

    kind, scale = "spacetime", 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sm = x.clone()
        sm[:, 1:] += 0.25 * x[:, :-1]
        sm[:, :-1] += 0.25 * x[:, 1:]
        out = torch.empty(x.shape[0], 2 * x.shape[1] - 1, *x.shape[2:])
        out[:, 0::2] = sm
        out[:, 1::2] = 0.5 * (sm[:, :-1] + sm[:, 1:])
        return out


def _frames(n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 4, 5, generator=g) for _ in range(n)]


# --------------------------------------------------------------------------- layout


def test_layout_of_kinds() -> None:
    st, rec = StreamLayout("spacetime"), StreamLayout("recurrent")
    assert (st.step, st.n_out(5), st.output_of(3)) == (2, 9, 6)
    assert (rec.step, rec.n_out(5), rec.output_of(3)) == (1, 5, 3)
    assert [st.source(j) for j in range(5)] == [("frame", 0), ("mid", 0), ("frame", 1),
                                                 ("mid", 1), ("frame", 2)]
    assert st.context(0) == (0, 1) and st.context(4) == (4, 4) and rec.context(0) == (0, 0)
    assert layout_of(GlobalSpaceTime()) == st and layout_of(TemporalBox()) == rec

    class Window(nn.Module):
        kind, num_frames, center_frame_idx = "window", 7, 2

    win = layout_of(Window())
    assert win.context(10) == (4, 4) and not win.chunked and win.n_out(6) == 6


@pytest.mark.parametrize("kind", ["spacetime", "recurrent"])
@pytest.mark.parametrize("n,chunk,overlap", [(1, 3, 0), (7, 3, 1), (8, 2, 0), (9, 4, 2),
                                             (10, 1, 1)])
def test_owned_outputs_of_chunks_concatenate_to_the_whole(kind: str, n: int, chunk: int,
                                                          overlap: int) -> None:
    """Cut a stream into chunks, run each with the layout's context and keep the outputs it
    owns: the concatenation is the whole-stream run (the model's reach is within the context)."""
    model = LocalSpaceTime() if kind == "spacetime" else TemporalBox()
    overlap = max(overlap, 2)  # cover the toy models' reach (2 inputs)
    layout = layout_of(model)
    x = torch.stack(_frames(n))[None]
    whole = model(x)[0]
    left, right = layout.context(overlap)
    parts, owned = [], []
    for c0 in range(0, n, chunk):
        c1 = min(n, c0 + chunk)
        lo, hi = max(0, c0 - left), min(n, c1 + right)
        out = model(x[:, lo:hi])[0]
        js = layout.owned(c0, c1, last=c1 == n)
        owned += list(js)
        parts += [out[j - layout.output_of(lo)] for j in js]
    assert owned == list(range(layout.n_out(n)))
    torch.testing.assert_close(torch.stack(parts), whole, rtol=0, atol=1e-6)
    streamed = list(restore_stream(model, iter(_frames(n)), chunk=chunk, overlap=overlap))
    torch.testing.assert_close(torch.stack(streamed), whole, rtol=0, atol=1e-6)


def test_segment_plans_follow_the_layout() -> None:
    """The segments of ``stvsr upscale`` own the outputs of the whole video's layout, in order."""
    n = 11
    times = [Fraction(k, 25) for k in range(n)]
    layout = StreamLayout("spacetime")
    for length in (1, 3, 4, 11):
        plans = [output_plan(s, times, interpolate=True) for s in plan_segments(n, [], length)]
        got = [(w, i) for p in plans for w, i, _ in p]
        assert got == [layout.source(j) for j in range(layout.n_out(n))]
        flat = [(w, i) for s in plan_segments(n, [], length)
                for w, i, _ in output_plan(s, times, interpolate=False)]
        assert flat == [("frame", i) for i in range(n)]


def test_chunking_table() -> None:
    # S-VSR eval runs every Vid4 clip (<= 49 frames) whole; the ST-VSR full protocol every
    # Vid4 clip's <= 25 LR frames
    assert CHUNKING["recurrent"][0] >= 49 and CHUNKING["spacetime"][0] >= 25
    assert chunking("spacetime") == CHUNKING["spacetime"]
    assert chunking("recurrent", 7, None) == (7, CHUNKING["recurrent"][1])


# --------------------------------------------------------------------------- ST-VSR protocols


def _direct_scores(model: nn.Module, folder: Path, protocol: str) -> list[tuple[int, str, float]]:
    """Per-frame ``(frame, kind, psnr_y)`` of the ST-VSR protocols with direct model calls
    (the evaluation before it went through ``restore_stream``)."""
    from stvsr.eval.protocols import full_plan, windowed_plan

    files = sorted(folder.iterdir())
    hr = [modcrop(frame_to_tensor(read_image(f)), model.scale) for f in files]
    lr = [degrade(h[None], "bi", model.scale)[0] for h in hr]
    gt = [to_uint8(h) for h in hr]
    n = len(files)

    def call(frames: list[torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return model(torch.stack(frames)[None])[0]

    def row(t: int, out: torch.Tensor, kind: str) -> tuple[int, str, float]:
        return t, kind, frame_metrics(to_uint8(out), gt[t])["psnr_y"]

    rows = []
    if protocol == "windowed":
        for a, scored in windowed_plan(n):
            y = call(lr[a:a + 7:2])
            rows += [row(a + j, y[j], "input" if j % 2 == 0 else "new") for j in scored]
    else:
        idx, tail = full_plan(n)
        y = call([lr[i] for i in idx])
        rows += [row(t, y[t], "input" if t % 2 == 0 else "new") for t in range(y.shape[0])]
        if tail is not None:
            rows.append(row(tail, call([lr[tail - 2], lr[tail]])[2], "input"))
    return sorted(rows)


@pytest.mark.parametrize("frames", [10, 13])
@pytest.mark.parametrize("protocol", ["windowed", "full"])
def test_st_protocols_through_restore_stream_equal_direct_calls(
        tmp_path: Path, protocol: str, frames: int) -> None:
    from stvsr.eval import evaluate_spacetime

    root = write_panning_clips(tmp_path / "clips", clips=1, frames=frames, blocks=(10, 12))
    model = GlobalSpaceTime().eval()
    res = evaluate_spacetime(model, root, protocol=protocol, progress=False)
    rows = res["clips"]["clip0"]["per_frame"]
    got = [(r["frame"], r["kind"], r["psnr_y"]) for r in rows]
    assert got == _direct_scores(model, root / "clip0", protocol)
    # a small chunk splits the full protocol's clip: the global toy model then differs
    if protocol == "full":
        split = evaluate_spacetime(model, root, protocol=protocol, progress=False, chunk=2,
                                   overlap=1)
        assert split["mean"]["psnr_y"] != res["mean"]["psnr_y"]


def test_svsr_eval_runs_a_clip_whole(tmp_path: Path) -> None:
    from stvsr.eval import evaluate_svsr

    root = write_panning_clips(tmp_path / "clips", clips=1, frames=12, blocks=(6, 6))
    model = TemporalBox(scale=2)
    res = evaluate_svsr(model, root, progress=False)
    files = sorted((root / "clip0").iterdir())
    hr = [modcrop(frame_to_tensor(read_image(f)), 2) for f in files]
    lr = torch.stack([degrade(h[None], "bi", 2)[0] for h in hr])
    out = model(lr[None])[0]
    want = [frame_metrics(to_uint8(o), to_uint8(h))["psnr_y"] for o, h in zip(out, hr)]
    assert res["clips"]["clip0"]["per_frame_psnr_y"] == want


# --------------------------------------------------------------------------- rounding


def test_one_rounding_rule_ties_to_even() -> None:
    """Exact ties ``x · 255 = k + 1/2`` (in float32) go to the even neighbour, 8 and 16 bits;
    the metrics and the writer use the same function."""
    import stvsr.metrics

    assert stvsr.metrics.to_uint8 is to_uint8
    ks = np.arange(255)
    x = torch.tensor((ks + 0.5) / 255.0, dtype=torch.float32)
    exact = (x * 255.0).numpy() == (ks + 0.5)
    assert exact.sum() > 50  # plenty of exact ties to check
    img = x.view(1, 1, -1).expand(3, 1, -1)
    got = to_uint8(img)[0, :, 0].astype(int)
    want = np.where(ks % 2 == 0, ks, ks + 1)
    np.testing.assert_array_equal(got[exact], want[exact])
    np.testing.assert_array_equal(tensor_to_frame(img)[0, :, 0].astype(int)[exact], want[exact])
    # not ties: nearest
    off = torch.tensor([0.49, 0.51, 254.49, 254.51]) / 255.0
    assert to_uint8(off.view(1, 1, -1).expand(3, 1, -1))[0, :, 0].tolist() == [0, 1, 254, 255]
    # 16 bits: 0.5 / 65535 and 1.5 / 65535 are exact ties in float32
    hi = torch.tensor([0.5, 1.5, 2.5, -1.0, 70000.0]) / 65535.0
    assert tensor_to_frame(hi.view(1, 1, -1).expand(3, 1, -1), high=True)[0, :, 0].tolist() == [
        0, 2, 2, 0, 65535]


def test_frame_tensor_round_trip_is_exact() -> None:
    u8 = np.arange(256, dtype=np.uint8).reshape(1, 256, 1).repeat(3, axis=2)
    assert frame_to_tensor(u8).dtype == torch.float32
    np.testing.assert_array_equal(to_uint8(frame_to_tensor(u8)), u8)
    u16 = (np.arange(0, 65536, 7, dtype=np.uint16)).reshape(1, -1, 1).repeat(3, axis=2)
    np.testing.assert_array_equal(tensor_to_frame(frame_to_tensor(u16), high=True), u16)
    batch = np.stack([u8, u8[:, ::-1]])
    assert frames_to_tensor(batch).shape == (2, 3, 1, 256)
    np.testing.assert_array_equal(to_uint8(frames_to_tensor(batch)), batch)
    np.testing.assert_array_equal(to_8bit(np.array([[[0, 128, 129]]], np.uint16)),
                                  [[[0, 0, 1]]])
    np.testing.assert_array_equal(to_8bit(u16 // 257 * 257), (u16 // 257).astype(np.uint8))


# --------------------------------------------------------------------------- trainer


@pytest.mark.parametrize("protocol", ["windowed", "full"])
def test_trainer_validation_feeds_restore_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 protocol: str) -> None:
    """Validation mid-training goes through ``restore_stream`` (inference mode), and training
    goes on afterwards (no inference tensor leaks into autograd)."""
    import stvsr.eval.runner
    from stvsr.train.config import config_from_dict
    from stvsr.train.trainer import Trainer

    calls: list[int] = []
    real = stvsr.eval.runner.restore_stream

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(stvsr.eval.runner, "restore_stream", counted)
    root = write_panning_clips(tmp_path / "clips", clips=2, frames=7, blocks=(10, 12))
    cfg = config_from_dict({
        "model": {"preset": "sfnet-lite", "overrides": {"num_feat": 8, "num_fe": 1, "num_ds": 1,
                                                         "num_rec": 1, "fetch_frames": 2}},
        "data": {"type": "folder", "root": str(root), "mode": "stvsr", "num_frames": 2,
                 "lr_patch": 4, "batch_size": 2},
        "val": {"every": 1, "data": str(root), "max_frames": 7, "protocol": protocol},
        "schedule": {"periods": [10], "warmup_steps": 1},
        "train": {"total_steps": 2, "log_every": 1, "ckpt_every": 100, "device": "cpu"},
    })
    Trainer(cfg, tmp_path / "out", progress=False).fit()
    rows = (tmp_path / "out" / "val_log.csv").read_text().splitlines()
    assert len(rows) >= 3 and calls  # header + a row per validation
