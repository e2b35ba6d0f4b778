"""onnxruntime (CPU) against PyTorch (CPU): seconds per output frame of exported models.

For every preset this exports the model (``stvsr.export.onnx_export.export_onnx``, fixed size,
checked against PyTorch), then times, in the same process and with the same number of threads,

* ``torch``: the model's own PyTorch forward (what ``stvsr upscale`` runs: oneDNN convs, the
  native DCN kernel when it builds), ``torch.no_grad``;
* ``onnxruntime``: ``InferenceSession.run`` on the exported graph (CPU execution provider,
  ``--threads`` intra-op threads, all graph optimisations);

on the same random ``(1, N, 3, H, W)`` input, and prints seconds per output frame (the best of
``--repeat`` runs after one warm-up) and the ratio. Presets without official weights run with
random weights (the timing does not depend on them; EDVR's DCN offsets are spread to about a
pixel so that sampling is not trivially aligned).

Usage::

    .venv/bin/python benchmarks/onnx_speed.py [--presets basicvsr-vimeo-bi edvr-m sfnet-s
        stvsr-twostage stvsr-bicubic] [--size 180x320] [--frames N] [--threads 2] [--repeat 2]
        [--dcn deformconv|gridsample] [--json out.json] [--keep DIR]

Wall-clock numbers depend on what else runs on the machine: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

DEFAULT_PRESETS = ["basicvsr-vimeo-bi", "edvr-m", "sfnet-s", "stvsr-twostage", "stvsr-bicubic"]


def _size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def _build(name: str) -> torch.nn.Module:
    from stvsr.registry import create_model

    model = create_model(name)  # official weights where the preset has them, else random
    if any("conv_offset" in n for n, _ in model.named_parameters()):
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "conv_offset.weight" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.03)
    return model.eval()


def _best(fn, repeat: int) -> float:
    fn()  # warm-up (oneDNN primitive creation, onnxruntime arena)
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench(name: str, size: tuple[int, int], frames: int | None, threads: int, repeat: int,
          dcn: str, folder: Path) -> dict:
    import onnxruntime as ort

    from stvsr.export.onnx_export import export_onnx

    model = _build(name)
    path = folder / f"{name}.onnx"
    meta = export_onnx(name, path, model=model, frames=frames, size=size, dcn=dcn,
                       log=lambda s: None)
    n_in, n_out = meta["frames_in"], meta["frames_out"]
    x = torch.rand(1, n_in, 3, *size, generator=torch.Generator().manual_seed(0))
    torch.set_num_threads(threads)

    def run_torch() -> None:
        with torch.no_grad():
            model(x)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {"lr": x.numpy()}

    def run_ort() -> None:
        sess.run(None, feed)

    t_torch = _best(run_torch, repeat) / n_out
    t_ort = _best(run_ort, repeat) / n_out
    return {"preset": name, "size": list(size), "frames_in": n_in, "frames_out": n_out,
            "deformable_conv": meta.get("deformable_conv"), "pretrained": meta["pretrained"],
            "max_abs_diff": meta["check"]["max_abs_diff"],
            "torch_s_per_frame": t_torch, "onnxruntime_s_per_frame": t_ort,
            "onnxruntime_speedup": t_torch / t_ort if t_ort > 0 else None}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", nargs="+", default=DEFAULT_PRESETS)
    p.add_argument("--size", type=_size, default=(180, 320), help="LR HxW (default 180x320)")
    p.add_argument("--frames", type=int, default=None, help="input frames (default per kind)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--dcn", choices=["deformconv", "gridsample"], default="deformconv")
    p.add_argument("--json", default=None)
    p.add_argument("--keep", default=None, help="keep the .onnx files in this folder")
    a = p.parse_args(argv)
    import onnxruntime as ort

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(a.keep) if a.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for name in a.presets:
            r = bench(name, a.size, a.frames, a.threads, a.repeat, a.dcn, folder)
            rows.append(r)
            print(f"{name:<20} {r['frames_in']}->{r['frames_out']} frames "
                  f"{a.size[0]}x{a.size[1]}  torch {r['torch_s_per_frame']:.3f} s/frame  "
                  f"onnxruntime {r['onnxruntime_s_per_frame']:.3f} s/frame  "
                  f"(x{r['onnxruntime_speedup']:.2f}; max |diff| {r['max_abs_diff']:.2g})",
                  flush=True)
    if a.json:
        doc = {"info": {"torch": torch.__version__, "onnxruntime": ort.__version__,
                        "threads": a.threads, "repeat": a.repeat, "cpu": platform.processor()
                        or platform.machine()}, "results": rows}
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(doc, indent=2))
    return rows


if __name__ == "__main__":
    main()
