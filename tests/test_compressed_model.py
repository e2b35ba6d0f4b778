"""The models for compressed input: ``basicvsr-compressed`` (a BasicVSR fine-tune shipped as its
difference to ``basicvsr-vimeo-bi``), ``basicvsr-compressed-bd`` (the same for BD input, a
difference to ``basicvsr-vimeo-bd``) and ``sfnet-s-compressed`` (the first as sfnet-s's store):
the packaged files, strict loading, equivalences, and held-out quality checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import stvsr
from stvsr.errors import CheckpointError
from stvsr.registry import get_weights, weights_file
from stvsr.weights import cached_path, read_checkpoint, sha256_file

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name,base", [("basicvsr-compressed", "basicvsr-vimeo-bi"),
                                       ("basicvsr-compressed-bd", "basicvsr-vimeo-bd")])
def test_shipped_delta_is_packaged_and_verified(name: str, base: str) -> None:
    from stvsr.weights import delta_base_of

    spec = get_weights(name)
    path = cached_path(spec)
    assert path.is_file(), f"{path} is not in the package"
    assert sha256_file(path) == spec.sha256
    delta = read_checkpoint(path)
    own = stvsr.create_model("basicvsr", weights=None).state_dict()
    keys = {k[len("delta."):] for k in delta}
    assert keys <= set(own) and all(k.startswith("delta.") for k in delta)
    # run 2 of each model trained SpyNet too, so every parameter is stored, and no buffer
    params = {k for k, _ in stvsr.create_model("basicvsr", weights=None).named_parameters()}
    assert params == keys
    assert all(v.dtype == torch.float16 for v in delta.values())
    assert delta_base_of(path) == base
    assert stvsr.create_model(name, weights=None).delta_base == base


def test_compressed_presets_load_strictly_and_agree(pull_weights) -> None:
    """basicvsr-compressed = the official BI weights + the shipped difference; sfnet-s-compressed
    has exactly that BasicVSR as its store and sfnet-s's head, so its input frames are
    basicvsr-compressed's output."""
    pull_weights("basicvsr-vimeo-bi")
    pull_weights("rife-v3.9")
    official = read_checkpoint(weights_file("basicvsr-vimeo-bi"))
    delta = read_checkpoint(weights_file("basicvsr-compressed"))
    tuned = stvsr.create_model("basicvsr-compressed")
    state = tuned.state_dict()
    moved = {k for k, v in official.items() if not torch.equal(state[k], v)}
    assert moved == {k[len("delta."):] for k in delta}  # the rest is the official tensors
    st = stvsr.create_model("sfnet-s-compressed")
    clean = stvsr.create_model("sfnet-s")
    for k, v in st.state_dict().items():
        if k.startswith("vsr."):
            assert torch.equal(v, state[k[4:]]), k
        else:
            assert torch.equal(v, clean.state_dict()[k]), k
    x = torch.rand(1, 3, 3, 16, 20)
    with torch.no_grad():
        assert torch.allclose(st(x)[:, 0::2], tuned(x), atol=1e-5)
    with pytest.raises(CheckpointError, match="does not fit model"):
        stvsr.create_model("basicvsr-compressed", weights=get_weights("sfnet-s").name)


def test_bd_preset_is_the_bd_weights_plus_its_difference(pull_weights) -> None:
    """basicvsr-compressed-bd = the official BD weights + the shipped difference (tensors the
    file leaves out stay the official ones); its file on the BI preset is refused in one line."""
    pull_weights("basicvsr-vimeo-bd")
    pull_weights("basicvsr-vimeo-bi")
    official = read_checkpoint(weights_file("basicvsr-vimeo-bd"))
    delta = read_checkpoint(weights_file("basicvsr-compressed-bd"))
    state = stvsr.create_model("basicvsr-compressed-bd").state_dict()
    for k, v in official.items():
        if f"delta.{k}" not in delta:
            assert torch.equal(state[k], v), k
        else:
            assert torch.equal(state[k], (v.double() + delta[f"delta.{k}"].double()).float()), k
    assert len(delta) < len(official)  # frozen-in-every-run tensors are left out
    with pytest.raises(CheckpointError, match="is a difference to basicvsr-vimeo-bd"):
        stvsr.create_model("basicvsr-compressed", weights="basicvsr-compressed-bd")


def test_a_run_continues_a_shipped_difference(pull_weights, tmp_path: Path) -> None:
    """``model.init: basicvsr-compressed-bd`` starts a run from exactly that preset's weights,
    and the run ships its difference against the same base (basicvsr-vimeo-bd)."""
    from stvsr.train.builders import build_model, init_delta_base
    from stvsr.train.config import config_from_dict

    pull_weights("basicvsr-vimeo-bd")
    pull_weights("basicvsr-vimeo-bi")
    cfg = config_from_dict({"model": {"preset": "basicvsr", "init": "basicvsr-compressed-bd"},
                            "data": {"root": str(tmp_path)}, "schedule": {"type": "constant"}})
    model = build_model(cfg, log=lambda _msg: None)
    want = stvsr.create_model("basicvsr-compressed-bd").state_dict()
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())
    assert init_delta_base("basicvsr-compressed-bd") == "basicvsr-vimeo-bd"
    assert init_delta_base("basicvsr-compressed") == "basicvsr-vimeo-bi"
    assert init_delta_base("basicvsr-vimeo-bd") == "basicvsr-vimeo-bd"


def test_compressed_model_beats_the_official_on_compressed_input(vid4_dir: Path,
                                                                 pull_weights) -> None:
    """Held-out check (Vid4 is never trained on): on an H.264 CRF 28 version of a calendar crop
    the fine-tune is better than the official BI weights, and on the clean crop it loses
    little."""
    import numpy as np

    from stvsr.data.chain import parse_chain
    from stvsr.data.images import list_frame_files, read_image
    from stvsr.metrics import psnr, to_uint8

    pull_weights("basicvsr-vimeo-bi")
    files = list_frame_files(vid4_dir / "GT" / "calendar")[:6]
    hr = torch.stack([torch.from_numpy(read_image(f)).permute(2, 0, 1).float() / 255
                      for f in files])[:, :, 192:384, 192:448]
    models = [stvsr.create_model(n) for n in ("basicvsr-compressed", "basicvsr-vimeo-bi")]

    def scores(spec: str) -> list[float]:
        lr = parse_chain(spec).apply(hr, np.random.default_rng(0)).unsqueeze(0)
        with torch.no_grad():
            outs = [m(lr)[0].clamp(0, 1) for m in models]
        return [sum(psnr(to_uint8(o), to_uint8(g), crop_border=4, y_channel=True)
                    for o, g in zip(out, hr)) / len(hr) for out in outs]

    tuned, official = scores("bi+h264:crf=28")
    assert tuned > official + 0.1, (tuned, official)
    tuned_clean, official_clean = scores("bi")
    assert tuned_clean > official_clean - 1.0, (tuned_clean, official_clean)


def test_bd_model_beats_the_official_bd_on_the_protocol_chain(vid4_dir: Path,
                                                              pull_weights) -> None:
    """Held-out check (Vid4 is never trained on): on a calendar crop coded by the
    compressed-VSR protocol's chain at CRF 25, basicvsr-compressed-bd beats the official BD
    weights (by 0.17 dB when measured; the whole-Vid4 gain is 0.29)."""
    import numpy as np

    from stvsr.data.chain import parse_chain
    from stvsr.data.images import list_frame_files, read_image
    from stvsr.metrics import psnr, to_uint8

    pull_weights("basicvsr-vimeo-bd")
    files = list_frame_files(vid4_dir / "GT" / "calendar")[:6]
    hr = torch.stack([torch.from_numpy(read_image(f)).permute(2, 0, 1).float() / 255
                      for f in files])[:, :, 192:384, 192:448]
    lr = parse_chain("bd+h264:crf=25,preset=medium,pix_fmt=yuv444p,fps=10").apply(
        hr, np.random.default_rng(0)).unsqueeze(0)
    scores = []
    for name in ("basicvsr-compressed-bd", "basicvsr-vimeo-bd"):
        with torch.no_grad():
            out = stvsr.create_model(name)(lr)[0].clamp(0, 1)
        scores.append(sum(psnr(to_uint8(o), to_uint8(g), y_channel=True)
                          for o, g in zip(out, hr)) / len(hr))
    tuned, official = scores
    assert tuned > official + 0.1, (tuned, official)  # measured: 20.649 vs 20.476
