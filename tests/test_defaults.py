"""`--device auto` and `--precision auto`."""

from __future__ import annotations

import torch

from stvsr.infer.defaults import resolve_device, resolve_precision


def test_auto_device_and_precision() -> None:
    dev = resolve_device("auto")
    assert dev == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cuda:1") == "cuda:1" and resolve_device("cpu") == "cpu"
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    for p in ("fp32", "bf16", "fp16"):
        assert resolve_precision(p, "cpu") == p
    if torch.cuda.is_available():
        assert resolve_precision("auto", "cuda") in ("bf16", "fp16")
