"""`--device auto` and `--precision auto`: what each answers on each kind of machine.

The probes the functions consult (CUDA present, CUDA bf16, oneDNN native bf16 on the CPU) are
replaced by fakes, so every case runs on any machine and the expected answer is written out."""

from __future__ import annotations

import pytest
import torch

from stvsr.infer.defaults import resolve_device, resolve_precision


def fake_machine(monkeypatch: pytest.MonkeyPatch, *, cuda: bool, cuda_bf16: bool = False,
                 cpu_bf16: bool | None = False) -> None:
    """``cpu_bf16=None``: a torch whose oneDNN does not offer the bf16 probe at all."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda_bf16)
    probe = None if cpu_bf16 is None else (lambda: cpu_bf16)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", probe, raising=False)


@pytest.mark.parametrize("cuda,expected", [(True, "cuda"), (False, "cpu")])
def test_auto_device(monkeypatch: pytest.MonkeyPatch, cuda: bool, expected: str) -> None:
    fake_machine(monkeypatch, cuda=cuda)
    assert resolve_device("auto") == expected
    # a named device is taken as given, whatever the machine has
    for name in ("cpu", "cuda", "cuda:1", "mps"):
        assert resolve_device(name) == name


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
@pytest.mark.parametrize("cuda_bf16,expected", [(True, "bf16"), (False, "fp16")])
def test_auto_precision_on_cuda(monkeypatch: pytest.MonkeyPatch, device: str, cuda_bf16: bool,
                                expected: str) -> None:
    # the CPU's abilities do not matter for a CUDA device
    for cpu_bf16 in (True, False):
        fake_machine(monkeypatch, cuda=True, cuda_bf16=cuda_bf16, cpu_bf16=cpu_bf16)
        assert resolve_precision("auto", device) == expected


@pytest.mark.parametrize("cpu_bf16,expected", [(True, "bf16"), (False, "fp32"), (None, "fp32")])
def test_auto_precision_on_cpu(monkeypatch: pytest.MonkeyPatch, cpu_bf16: bool | None,
                               expected: str) -> None:
    # a GPU elsewhere in the machine does not change what the CPU runs
    for cuda in (True, False):
        fake_machine(monkeypatch, cuda=cuda, cuda_bf16=True, cpu_bf16=cpu_bf16)
        assert resolve_precision("auto", "cpu") == expected


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_named_precision_is_kept(monkeypatch: pytest.MonkeyPatch, device: str) -> None:
    fake_machine(monkeypatch, cuda=True, cuda_bf16=False, cpu_bf16=True)
    for p in ("fp32", "bf16", "fp16"):
        assert resolve_precision(p, device) == p


def test_auto_device_then_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `--device auto --precision auto` gives, end to end, on three machines."""
    fake_machine(monkeypatch, cuda=True, cuda_bf16=True, cpu_bf16=False)
    assert resolve_precision("auto", resolve_device("auto")) == "bf16"
    fake_machine(monkeypatch, cuda=False, cpu_bf16=True)
    assert resolve_precision("auto", resolve_device("auto")) == "bf16"
    fake_machine(monkeypatch, cuda=False, cpu_bf16=False)
    assert resolve_precision("auto", resolve_device("auto")) == "fp32"


def test_bf16_on_a_cpu_without_it_warns_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Emulated bf16 runs (oneDNN's fused kernels step aside) but is ~40x slower than fp32:
    asked for by name on such a CPU, it warns and says what to use instead."""
    import warnings

    fake_machine(monkeypatch, cuda=False, cpu_bf16=False)
    with pytest.warns(RuntimeWarning, match="emulated.*--precision fp32") as rec:
        assert resolve_precision("bf16", "cpu") == "bf16"
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", "cuda") == "bf16"  # the CPU does not matter there
        assert resolve_precision("auto", "cpu") == "fp32"
        fake_machine(monkeypatch, cuda=False, cpu_bf16=True)
        assert resolve_precision("bf16", "cpu") == "bf16"


def test_the_cli_says_the_bf16_warning_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path,
                                                   capsys: pytest.CaptureFixture) -> None:
    """On the command line a warning is ``warning: ...``, one line, no Python source line."""
    import numpy as np

    from stvsr.cli import main
    from stvsr.data.video import write_image

    fake_machine(monkeypatch, cuda=False, cpu_bf16=False)
    src = tmp_path / "frames"
    src.mkdir()
    for i in range(2):
        write_image(src / f"{i:03d}.png", np.full((16, 16, 3), 40 * i, np.uint8))
    assert main(["upscale", str(src), str(tmp_path / "out.mp4"), "--model", "bicubic",
                 "--precision", "bf16", "--dry-run"]) == 0
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if "emulated" in x]
    assert len(lines) == 1 and lines[0].startswith("warning: bf16 on this CPU is emulated")
    assert "RuntimeWarning" not in err and "resolve_precision" not in err
