"""sfnet-s v2 (the shipped model): structure, equivalences of the untrained head, distant fetch,
head-only weights, held-out quality."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import stvsr
from stvsr.errors import CheckpointError, StvsrError
from stvsr.models.basicvsr import BasicVSR
from stvsr.models.rife import RIFE
from stvsr.models.sfnet_s import SFNetS, export_head
from stvsr.models.stvsr_baselines import TwoStageRIFE, interleave
from stvsr.ops.flow import flow_warp, midpoint_motion, resize_flow
from stvsr.registry import get_weights, weights_file
from stvsr.weights import cached_path, read_checkpoint, sha256_file

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kw) -> SFNetS:
    torch.manual_seed(0)
    return SFNetS(num_feat=8, num_block=1, mid_feat=8, mid_block=1, **kw).eval()


def smooth(n: int, h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    base = torch.nn.functional.interpolate(torch.rand(n, 3, h // 2, w // 2, generator=g),
                                           size=(h, w), mode="bilinear", align_corners=False)
    return base.unsqueeze(0)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_shapes_and_input_frames_are_basicvsr(n: int) -> None:
    model = tiny()
    torch.nn.init.normal_(model.head.conv_last.weight, std=1e-2)  # a non-trivial head
    x = torch.rand(1, n, 3, 12, 20)
    with torch.no_grad():
        out = model(x)
        ref = model.vsr(x)
    assert out.shape == (1, 2 * n - 1, 3, 48, 80)
    assert torch.equal(out[:, 0::2], ref)
    assert (model.kind, model.scale, model.num_frames) == ("spacetime", 4, 0)
    with pytest.raises(StvsrError, match="at least 2"):
        model(torch.rand(1, 1, 3, 8, 8))


def test_untrained_head_with_rife_is_the_rife_two_stage() -> None:
    """Zero-initialised last layers: with RIFE motion and RIFE's bilinear warping the model is
    exactly BasicVSR + RIFE between the restored frames (stvsr-twostage-rife)."""
    model = tiny(use_rife=True, warp_mode="bilinear")
    x = smooth(3, 16, 16)
    ref = TwoStageRIFE(model.vsr, model.rife).eval()
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5)


def test_untrained_head_with_spynet_is_a_bicubic_flow_two_stage() -> None:
    """With SpyNet motion the untrained model is the two-stage baseline's linear-motion
    interpolation with occlusion-aware weights, warping with bicubic sampling (written out
    here independently)."""
    model = tiny()
    x = smooth(3, 12, 16)
    with torch.no_grad():
        out = model(x)
        flows = model.vsr.compute_flows(x)
        hr = model.vsr(x)
        y = hr.clamp(0, 1)
        mids = []
        for i in range(2):
            m = midpoint_motion(flows[0][:, i], flows[1][:, i], model.sigma)
            big = y.shape[-2:]
            ft0, ft1 = resize_flow(m.ft0, big), resize_flow(m.ft1, big)
            logit = torch.log(m.w0 + 1e-4) - torch.log(m.w1 + 1e-4)
            a = torch.sigmoid(torch.nn.functional.interpolate(
                logit, size=big, mode="bilinear", align_corners=False))
            w0 = flow_warp(y[:, i], ft0, mode="bicubic", padding_mode="border")
            w1 = flow_warp(y[:, i + 1], ft1, mode="bicubic", padding_mode="border")
            mids.append(a * w0 + (1 - a) * w1)
        ref = interleave(hr, torch.stack(mids, 1))
    assert torch.allclose(out, ref, atol=1e-5)


def test_distant_fetch_reads_frames_two_steps_away() -> None:
    """The new frame between inputs i and i+1 reads the stored state of input i+2 through the
    distant fetch, and nothing else does.

    One model, five inputs. The store entry of input 3 is swapped for the one input 3 would
    store if it were different, everything else left as it is: only the new frame between
    inputs 1 and 2 (two steps before input 3) may change; the input frames and the new frames
    next to input 3 (which use its features directly, not its store entry) must not. With the
    fetch's output zeroed on the same model the swap has no effect at all."""
    model = tiny()
    torch.nn.init.normal_(model.head.conv_last.weight, std=0.1)  # the head's output is used
    x = smooth(5, 12, 16)
    far = x.clone()
    far[:, 3] = 1 - far[:, 3]

    def entries(inputs: torch.Tensor) -> list:
        seen: list = []
        handle = model.head.store.register_forward_hook(lambda m, a, out: seen.append(out))
        with torch.no_grad():
            model(inputs)
        handle.remove()
        return seen

    swapped_entry = entries(far)[3]
    assert len(entries(x)) == 5  # one store entry per input frame

    def run(swap: bool, fetch_off: bool) -> torch.Tensor:
        calls = iter(range(5))
        hooks = []
        if swap:
            hooks.append(model.head.store.register_forward_hook(
                lambda m, a, out: swapped_entry if next(calls) == 3 else out))
        if fetch_off:
            hooks.append(model.head.fetch.register_forward_hook(
                lambda m, a, out: torch.zeros_like(out)))
        with torch.no_grad():
            y = model(x)
        for h in hooks:
            h.remove()
        return y

    base, moved = run(False, False), run(True, False)
    change = (moved - base).abs().amax(dim=(0, 2, 3, 4))  # per output frame
    assert change[3] > 1e-3, change  # new frame 1|2 reads input 3, two steps away
    others = [k for k in range(9) if k != 3]
    assert torch.all(change[others] == 0), change  # inputs, and new frames 2|3, 3|4, 0|1

    base_off, moved_off = run(False, True), run(True, True)
    assert torch.equal(base_off, moved_off)  # without the fetch the swap is invisible
    assert (base_off[:, 3] - base[:, 3]).abs().max() > 1e-3  # the fetch contributes there
    assert torch.equal(base_off[:, 0::2], base[:, 0::2])


def test_head_only_checkpoint_and_export(tmp_path: Path, pull_weights) -> None:
    """export_head keeps head.* only and refuses non-official frozen parts; the head-only file
    loads strictly into the preset (the official BasicVSR is filled in)."""
    pull_weights("basicvsr-vimeo-bi")
    pull_weights("rife-v3.9")
    model = SFNetS()
    torch.nn.init.normal_(model.head.conv_last.weight, std=1e-3)
    full = tmp_path / "full.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(full))
    with pytest.raises(StvsrError, match="differs from the official"):
        export_head(full, tmp_path / "head.safetensors")
    model.vsr.load_state_dict(read_checkpoint(weights_file("basicvsr-vimeo-bi")))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(full))
    digest = export_head(full, tmp_path / "head.safetensors")
    assert digest == sha256_file(tmp_path / "head.safetensors")
    loaded = stvsr.create_model("sfnet-s", weights=tmp_path / "head.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    with pytest.raises(CheckpointError, match="does not fit model sfnet-s"):
        stvsr.create_model("sfnet-s", weights=weights_file("basicvsr-vimeo-bi"))


def test_shipped_head_is_packaged_and_verified() -> None:
    spec = get_weights("sfnet-s")
    path = cached_path(spec)
    assert path.is_file(), f"{path} is not in the package"
    assert sha256_file(path) == spec.sha256
    head = read_checkpoint(path)
    assert set(head) == {k for k in SFNetS().state_dict() if k.startswith("head.")}


def test_composite_presets_report_their_weights(pull_weights) -> None:
    pull_weights("basicvsr-vimeo-bi")
    pull_weights("rife-v3.9")
    for name in ("sfnet-s", "stvsr-twostage", "stvsr-twostage-rife"):
        model = stvsr.create_model(name)
        assert model.pretrained and model.weights_source, name
    assert not stvsr.create_model("stvsr-twostage", pretrained=False).pretrained
    two = stvsr.create_model("stvsr-twostage-rife")
    assert isinstance(two.vsr, BasicVSR) and isinstance(two.rife, RIFE)


def test_shipped_model_beats_the_two_stage_on_vid4(vid4_dir: Path, pull_weights) -> None:
    """Held-out check (Vid4 is never trained on): on a calendar crop the new frames of the
    shipped model are better than stvsr-twostage's, and the whole output is more than 2 dB
    above stvsr-bicubic."""
    from stvsr.data.degradations import degrade
    from stvsr.data.images import list_frame_files, read_image
    from stvsr.metrics import psnr, to_uint8

    pull_weights("basicvsr-vimeo-bi")
    pull_weights("rife-v3.9")
    files = list_frame_files(vid4_dir / "GT" / "calendar")[:7]
    hr = torch.stack([torch.from_numpy(read_image(f)).permute(2, 0, 1).float() / 255
                      for f in files])[:, :, 200:392, 200:456]
    lr = degrade(hr[0::2], "bi", 4).unsqueeze(0)
    models = [stvsr.create_model(n) for n in ("sfnet-s", "stvsr-twostage", "stvsr-bicubic")]

    def mean_psnr(out: torch.Tensor, gt: torch.Tensor) -> float:
        return sum(psnr(to_uint8(o), to_uint8(g), crop_border=4, y_channel=True)
                   for o, g in zip(out, gt)) / len(gt)

    with torch.no_grad():
        outs = [m(lr)[0] for m in models]
    new = [mean_psnr(o[1::2], hr[1::2]) for o in outs]
    assert new[0] > new[1], new
    assert mean_psnr(outs[0], hr) > mean_psnr(outs[2], hr) + 2.0
