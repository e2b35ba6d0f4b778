"""The models for compressed input: ``basicvsr-compressed`` (a BasicVSR fine-tune shipped as its
difference to ``basicvsr-vimeo-bi``) and ``sfnet-s-compressed`` (that BasicVSR as sfnet-s's
store): the packaged file, strict loading, equivalences, and a held-out quality check."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import stvsr
from stvsr.errors import CheckpointError
from stvsr.registry import get_weights, weights_file
from stvsr.weights import cached_path, read_checkpoint, sha256_file

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shipped_delta_is_packaged_and_verified() -> None:
    spec = get_weights("basicvsr-compressed")
    path = cached_path(spec)
    assert path.is_file(), f"{path} is not in the package"
    assert sha256_file(path) == spec.sha256
    delta = read_checkpoint(path)
    own = stvsr.create_model("basicvsr", weights=None).state_dict()
    keys = {k[len("delta."):] for k in delta}
    assert keys <= set(own) and all(k.startswith("delta.") for k in delta)
    assert not any(k.startswith("spynet.") for k in keys)  # frozen in training: left out
    assert {k for k in own if not k.startswith("spynet.")} == keys
    assert all(v.dtype == torch.float16 for v in delta.values())


def test_compressed_presets_load_strictly_and_agree(pull_weights) -> None:
    """basicvsr-compressed = the official BI weights + the shipped difference; sfnet-s-compressed
    has exactly that BasicVSR as its store and sfnet-s's head, so its input frames are
    basicvsr-compressed's output."""
    pull_weights("basicvsr-vimeo-bi")
    pull_weights("rife-v3.9")
    official = read_checkpoint(weights_file("basicvsr-vimeo-bi"))
    tuned = stvsr.create_model("basicvsr-compressed")
    state = tuned.state_dict()
    assert all(torch.equal(state[k], v) for k, v in official.items() if k.startswith("spynet."))
    moved = [k for k, v in official.items() if not torch.equal(state[k], v)]
    assert len(moved) == len([k for k in official if not k.startswith("spynet.")])
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
