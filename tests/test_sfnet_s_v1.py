"""sfnet-s-v1 (the first shipped model): structure, BasicVSR equivalence, head-only weights,
quality."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _helpers import write_panning_clips
from safetensors.torch import save_file

import stvsr
from stvsr.errors import CheckpointError, StvsrError
from stvsr.models.sfnet_s_v1 import MidFetch, SFNetSV1, export_head
from stvsr.registry import get_weights, weights_file
from stvsr.weights import cached_path, read_checkpoint, sha256_file

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny() -> SFNetSV1:
    torch.manual_seed(0)
    model = SFNetSV1(num_feat=8, num_block=1, mid_feat=8, mid_block=1).eval()
    torch.nn.init.normal_(model.head.conv_out.weight, std=1e-2)  # a non-trivial head
    return model


@pytest.mark.parametrize("n", [2, 3, 5])
def test_shapes_and_input_frames_are_basicvsr(n: int) -> None:
    model = tiny()
    x = torch.rand(1, n, 3, 12, 20)
    with torch.no_grad():
        out = model(x)
        ref = model.vsr(x)
    assert out.shape == (1, 2 * n - 1, 3, 48, 80)
    assert torch.equal(out[:, 0::2], ref)
    assert (model.kind, model.scale, model.num_frames) == ("spacetime", 4, 0)


def test_rejects_single_frame_and_bad_shape() -> None:
    model = tiny()
    with pytest.raises(StvsrError, match="at least 2"):
        model(torch.rand(1, 1, 3, 8, 8))
    with pytest.raises(StvsrError, match="expects input"):
        model(torch.rand(1, 3, 8, 8))


def test_untrained_head_with_still_flow_averages_the_neighbours() -> None:
    head = MidFetch(num_feat=4, mid_feat=4, num_block=1)
    n, h, w = 2, 6, 7
    g = torch.rand(2, n, 4, h, w)
    x = torch.rand(2, n, 3, h, w)
    y = torch.rand(2, n, 3, 4 * h, 4 * w)
    zero = torch.zeros(n, 2, h, w)
    mid = head(g[0], g[1], x[0], x[1], y[0], y[1], zero, zero)
    assert torch.allclose(mid, 0.5 * (y[0] + y[1]), atol=1e-6)


def test_untrained_head_follows_a_uniform_shift() -> None:
    """Frame 1 is frame 0 moved 2 LR px right; the middle frame is frame 0 moved 1 px."""
    head = MidFetch(num_feat=4, mid_feat=4, num_block=1)
    torch.manual_seed(1)
    big = torch.rand(1, 3, 24, 48)
    y0, y1 = big[..., 8:40], big[..., 0:32]  # y1(p) = y0(p - 8 HR px) -> f01 = +2 LR px in x
    f01 = torch.zeros(1, 2, 6, 8)
    f01[:, 0] = 2.0
    f10 = -f01
    g = torch.zeros(1, 4, 6, 8)
    x = torch.zeros(1, 3, 6, 8)
    mid = head(g, g, x, x, y0, y1, f01, f10)
    expect = big[..., 4:36]
    assert torch.allclose(mid[..., 8:-8], expect[..., 8:-8], atol=1e-5)


def test_gradients_reach_only_the_head_when_backbone_frozen() -> None:
    model = tiny().train()
    for p in model.vsr.parameters():
        p.requires_grad_(False)
    out = model(torch.rand(1, 3, 3, 8, 8))
    out[:, 1::2].mean().backward()
    assert all(p.grad is not None for p in model.head.parameters())
    assert all(p.grad is None for p in model.vsr.parameters())


def test_head_only_checkpoint_gets_the_official_backbone(tmp_path: Path, pull_weights) -> None:
    pull_weights("basicvsr-vimeo-bi")
    model = SFNetSV1()
    torch.manual_seed(0)
    for p in model.head.parameters():
        torch.nn.init.normal_(p, std=0.01)
    full = tmp_path / "full.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(full))
    with pytest.raises(StvsrError, match="differs from the official"):
        export_head(full, tmp_path / "head.safetensors")  # random backbone: refuse

    backbone = read_checkpoint(weights_file("basicvsr-vimeo-bi"))
    model.vsr.load_state_dict(backbone)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(full))
    digest = export_head(full, tmp_path / "head.safetensors")
    assert digest == sha256_file(tmp_path / "head.safetensors")
    head = read_checkpoint(tmp_path / "head.safetensors")
    assert head and all(k.startswith("head.") for k in head)

    loaded = stvsr.create_model("sfnet-s-v1", weights=tmp_path / "head.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # A full checkpoint loads strictly as it is; a foreign one is refused with one line.
    assert stvsr.create_model("sfnet-s-v1", weights=full).pretrained
    with pytest.raises(CheckpointError, match="does not fit model sfnet-s-v1"):
        stvsr.create_model("sfnet-s-v1", weights=weights_file("basicvsr-vimeo-bi"))


def test_shipped_head_is_packaged_and_verified() -> None:
    spec = get_weights("sfnet-s-v1")
    path = cached_path(spec)
    assert path.is_file(), f"{path} is not in the package"
    assert sha256_file(path) == spec.sha256
    head = read_checkpoint(path)
    assert set(head) == {k for k in SFNetSV1().state_dict() if k.startswith("head.")}


def test_shipped_model_beats_its_untrained_head_on_vid4(vid4_dir: Path, pull_weights) -> None:
    """Held-out check (Vid4 is never trained on): on a calendar crop the trained head improves
    the new frames over the untrained (pure flow-interpolation) head, and the whole output is
    more than 2 dB above stvsr-bicubic."""
    from stvsr.data.degradations import degrade
    from stvsr.data.video import list_frame_files, read_image
    from stvsr.metrics import psnr, to_uint8

    pull_weights("basicvsr-vimeo-bi")
    files = list_frame_files(vid4_dir / "GT" / "calendar")[:7]
    hr = torch.stack([torch.from_numpy(read_image(f)).permute(2, 0, 1).float() / 255
                      for f in files])[:, :, 200:392, 200:456]  # 7 frames, 192 x 256 crop
    lr = degrade(hr[0::2], "bi", 4).unsqueeze(0)
    trained = stvsr.create_model("sfnet-s-v1")
    assert trained.pretrained
    untrained = stvsr.create_model("sfnet-s-v1", weights=None)
    untrained.vsr.load_state_dict(trained.vsr.state_dict())
    bicubic = stvsr.create_model("stvsr-bicubic")

    def mean_psnr(out: torch.Tensor, gt: torch.Tensor) -> float:
        return sum(psnr(to_uint8(o), to_uint8(g), crop_border=4, y_channel=True)
                   for o, g in zip(out, gt)) / len(gt)

    with torch.no_grad():
        outs = [model(lr)[0] for model in (trained, untrained, bicubic)]
    new = [mean_psnr(o[1::2], hr[1::2]) for o in outs]
    assert new[0] > new[1], new  # the training helped on frames it never saw (by ~0.006 dB)
    assert mean_psnr(outs[0], hr) > mean_psnr(outs[2], hr) + 2.0  # the issue's +2 dB bar


def test_recipe_trains_only_the_head(tmp_path: Path, pull_weights) -> None:
    """configs/sfnet_s_cpu.yaml on a tiny folder: BasicVSR loaded strictly and left untouched,
    the head moves."""
    from stvsr.train.config import load_config
    from stvsr.train.trainer import Trainer

    pull_weights("basicvsr-vimeo-bi")
    write_panning_clips(tmp_path / "clips", 1, 7, (12, 12))
    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "configs" / "sfnet_s_v1_cpu.yaml", [
        f"data.root={tmp_path / 'clips'}", "data.lr_patch=8", "data.batch_size=1",
        "data.num_workers=0", "data.repeat=1", "data.intervals=[1]", "train.total_steps=2",
        "schedule.periods=[2]", "schedule.warmup_steps=0", "train.ckpt_every=100",
        "train.threads=0"])
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    before = {k: v.clone() for k, v in trainer.module.state_dict().items()}
    trainer.fit()
    after = trainer.module.state_dict()
    official = read_checkpoint(weights_file("basicvsr-vimeo-bi"))
    assert all(torch.equal(after[f"vsr.{k}"], v) for k, v in official.items())
    ema = trainer.ema.state_dict()  # the EMA of frozen weights is exact too (no rounding drift)
    assert all(torch.equal(ema[f"vsr.{k}"], v) for k, v in official.items())
    assert not torch.equal(after["head.conv_out.weight"], before["head.conv_out.weight"])
    assert (tmp_path / "run" / "model.safetensors").is_file()
