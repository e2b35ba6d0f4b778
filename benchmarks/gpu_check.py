"""GPU check: correctness of the CUDA paths and speed/memory of the main presets, in minutes.

Runs on a bare GPU machine with PyTorch (no PyAV, no network): official weights are used when
``--parts`` (``.gpu_pack/sfnet_s_parts.safetensors``, see ``benchmarks/gpu_pack.py``) is there,
otherwise random weights (the JSON says which). Prints a table and writes JSON.

(a) agreement: every checked preset's forward on the device in fp32 / bf16 / fp16 against CPU
    fp32 (PSNR of the outputs, dB; the same random input); the deformable convolution's pure
    PyTorch path against torchvision's operator on the device (max abs difference);
(b) speed: seconds per output frame and peak device memory at LR 180×320 (and 270×480 unless
    ``--quick``) in fp32 / bf16 / fp16;
(c) training steps per second of EDVR-M at its official recipe's patch and batch (LR 64, batch
    16; ``--quick``: batch 2, 5 steps);
(d) with ``--train-data CORPUS``: the sfnet-s GPU recipe (``configs/sfnet_s_gpu.yaml``: batch
    16, LR patch 64, 4 frames) as it was (fp32, PNG decoding and degradation in 12 loader
    workers) and through the frozen-store bank in bf16 (fp32 on a CPU without native bf16),
    measured one after the other by ``benchmarks/train_throughput.py``: samples per second,
    the fraction of the time spent waiting for data, and the ratio to the plain recipe and to
    the ~8 samples/s the plain GPU recipe reached on an H200 in 2026-11 (issue 19's baseline).

``python benchmarks/gpu_check.py [--device cuda] [--quick] [--json out/gpu_check.json]``;
``--device cpu --quick`` is the dry mode that CI runs so the script cannot rot.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a bare checkout

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def precisions(dev: torch.device) -> dict[str, torch.dtype | None]:
    """The precisions worth checking on ``dev``: all on CUDA; on a CPU fp32, and bf16 where it
    is native (emulated bf16 is ~40x slower than fp32 and not a path anyone should run)."""
    from stvsr.ops.fused import cpu_bf16_native

    if dev.type == "cuda":
        return PRECISIONS
    return {k: v for k, v in PRECISIONS.items()
            if k == "fp32" or (k == "bf16" and cpu_bf16_native())}


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _build(name: str, parts: Path | None) -> tuple[torch.nn.Module, str]:
    """Preset ``name`` with official weights from the parts file when given, else random."""
    from safetensors.torch import load_file

    from stvsr import create_model

    if name == "sfnet-s":
        model = create_model("sfnet-s-untrained", weights=None)
    else:
        model = create_model(name, weights=None)
    source = "random"
    if parts is not None and parts.is_file():
        state = load_file(str(parts))
        prefix = {"sfnet-s": "", "basicvsr": "vsr.", "rife": "rife."}.get(name)
        if prefix is not None:
            own = model.state_dict()
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            fit = {k: v for k, v in sub.items() if k in own}
            model.load_state_dict({**own, **fit})
            source = f"official ({len(fit)}/{len(own)} tensors)"
    return model.eval(), source


_FAST: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []  # optimized forms of one model


def _run(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """The engine's forward: ``stvsr.infer.optimize(model, device, precision)`` (kept for the
    calls that follow with the same model, so that its cached weights are reused)."""
    from stvsr.infer import optimize

    prec = next(k for k, v in PRECISIONS.items() if v == dtype)
    key = f"{x.device}/{prec}"
    if _FAST and _FAST[0][0] is not model:
        _FAST.clear()  # a new model: drop the previous one's cached weights
    net = next((n for m, k, n in _FAST if k == key), None)
    if net is None:
        net = optimize(model, x.device, prec)
        _FAST.append((model, key, net))
    with torch.no_grad():
        return net(x)


def _input(kind: str, n: int, h: int, w: int, dev: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 1, 3, h // 4, w // 4, generator=g)
    x = torch.nn.functional.interpolate(base[0], size=(h, w), mode="bilinear")[None]
    frames = [torch.roll(x, shifts=(i, 2 * i), dims=(-2, -1)) for i in range(n)]
    return torch.cat(frames, 1).clamp(0, 1).to(dev)


def check_agreement(names: list[str], dev: torch.device, parts: Path | None) -> list[dict]:
    rows = []
    for name in names:
        model, source = _build(name, parts)
        n = model.num_frames or 3
        x = _input(model.kind, n, 48, 64, torch.device("cpu"))
        ref = _run(model, x, None)
        model.to(dev)
        for prec, dtype in precisions(dev).items():
            out = _run(model, x.to(dev), dtype).cpu()
            rows.append({"model": name, "weights": source, "precision": prec,
                         "psnr_vs_cpu_fp32": round(_psnr(out, ref), 2)})
        model.cpu()
    return rows


def check_dcn(dev: torch.device) -> dict:
    from stvsr.ops.dcn import modulated_deform_conv2d, torchvision_available

    if not torchvision_available() or dev.type != "cuda":
        return {"skipped": "needs CUDA and an importable torchvision"}
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 64, 40, 48, generator=g).to(dev)
    off = (torch.randn(2, 8 * 18, 40, 48, generator=g) * 2).to(dev)
    mask = torch.rand(2, 8 * 9, 40, 48, generator=g).to(dev)
    wt = (torch.randn(64, 64, 3, 3, generator=g) * 0.05).to(dev)
    a = modulated_deform_conv2d(x, off, mask, wt, None, 1, 1, 1, 8, impl="pure")
    b = modulated_deform_conv2d(x, off, mask, wt, None, 1, 1, 1, 8, impl="torchvision")
    return {"max_abs_diff_pure_vs_torchvision": float((a - b).abs().max())}


def bench_speed(names: list[str], sizes: list[tuple[int, int]], dev: torch.device,
                parts: Path | None, reps: int) -> list[dict]:
    rows = []
    for name in names:
        model, source = _build(name, parts)
        model.to(dev)
        for h, w in sizes:
            n = model.num_frames or 6
            x = _input(model.kind, n, h, w, dev)
            outs = 1 if model.kind == "window" else (2 * n - 1 if model.kind == "spacetime"
                                                     else n)
            for prec, dtype in precisions(dev).items():
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(dev)
                _run(model, x, dtype)  # warm-up
                _sync(dev)
                t0 = time.perf_counter()
                for _ in range(reps):
                    _run(model, x, dtype)
                _sync(dev)
                sec = (time.perf_counter() - t0) / reps / outs
                mem = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
                rows.append({"model": name, "weights": source, "lr": f"{h}x{w}", "frames_in": n,
                             "precision": prec, "s_per_output_frame": round(sec, 5),
                             "peak_mib": None if mem is None else round(mem)})
        model.cpu()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def bench_train_edvr(dev: torch.device, quick: bool) -> dict:
    from stvsr import create_model

    model = create_model("edvr-m", weights=None).to(dev).train()
    batch, steps = (2, 5) if quick else (16, 30)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 5, 3, 64, 64, device=dev)
    gt = torch.rand(batch, 3, 256, 256, device=dev)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.sqrt((model(x) - gt) ** 2 + 1e-6).mean()
        loss.backward()
        opt.step()

    step()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(dev)
    return {"model": "edvr-m", "batch": batch, "lr_patch": 64,
            "steps_per_s": round(steps / (time.perf_counter() - t0), 3)}


BASELINE_SAMPLES_PER_S = 8.0  # the plain GPU recipe on an H200, 2026-11-28 (its training log)


def bench_train_sfnet_s(dev: torch.device, corpus: Path, parts: Path, quick: bool) -> list[dict]:
    """(d): the plain and the banked sfnet-s recipe on ``dev`` (see the module docstring)."""
    from train_throughput import measure

    common = [f"data.root={corpus}", f"train.device={dev.type}", "train.max_minutes=null"]
    common += ([f"model.init={parts}"] if parts.is_file()
               else ["model.init=null", "model.init_mode=strict"])
    if quick:
        common += ["data.batch_size=2", "data.lr_patch=16", "data.num_workers=0", "bank.pool=2",
                   "bank.max_inputs=4"]
    steps, warmup = (3, 1) if quick else (60, 10)
    bank_prec = "bf16" if "bf16" in precisions(dev) else "fp32"
    recipes = ["configs/sfnet_s_gpu.yaml",
               "configs/sfnet_s_gpu.yaml+bank.enabled=true+data.num_workers=0"
               f"+train.precision={bank_prec}"]
    root = Path(__file__).resolve().parents[1]
    rows = [measure(str(root / r), common, steps, warmup) for r in recipes]
    for r in rows:
        r["vs_plain"] = r["samples_per_s"] / rows[0]["samples_per_s"]
        r["vs_baseline_8_per_s"] = r["samples_per_s"] / BASELINE_SAMPLES_PER_S
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    ap.add_argument("--parts", default=".gpu_pack/sfnet_s_parts.safetensors")
    ap.add_argument("--json", default="out/gpu_check.json")
    ap.add_argument("--train-data", type=Path,
                    help="a training corpus (stvsr data prepare): also measure the sfnet-s "
                         "training throughput, plain and through the frozen-store bank")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    parts = Path(args.parts)
    t0 = time.perf_counter()
    report: dict = {"torch": torch.__version__, "device": str(dev),
                    "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda"
                    else "cpu", "quick": args.quick}
    names = ["basicvsr", "edvr-m", "rife", "sfnet-s"]
    report["agreement"] = check_agreement(names, dev, parts)
    report["dcn"] = check_dcn(dev)
    sizes = [(48, 64)] if (args.quick and dev.type == "cpu") else (
        [(180, 320)] if args.quick else [(180, 320), (270, 480)])
    speed_names = ["basicvsr", "edvr-m", "sfnet-s"] if dev.type == "cuda" or not args.quick \
        else ["basicvsr"]
    report["speed"] = bench_speed(speed_names, sizes, dev, parts, 1 if args.quick else 3)
    report["train"] = bench_train_edvr(dev, args.quick or dev.type == "cpu")
    if args.train_data:
        report["train_sfnet_s"] = bench_train_sfnet_s(dev, args.train_data, parts, args.quick)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    for r in report["agreement"]:
        print(f"agree  {r['model']:10s} {r['precision']:5s} {r['psnr_vs_cpu_fp32']:8.2f} dB"
              f"  ({r['weights']})")
    print(f"dcn    {report['dcn']}")
    for r in report["speed"]:
        print(f"speed  {r['model']:10s} {r['lr']:8s} {r['precision']:5s} "
              f"{r['s_per_output_frame']:.4f} s/frame  peak {r['peak_mib']} MiB")
    print(f"train  {report['train']}")
    for r in report.get("train_sfnet_s", []):
        print(f"train  sfnet-s {'bank ' if r['bank'] else 'plain'} {r['precision']:5s} "
              f"batch {r['batch']} patch {r['lr_patch']}: {r['samples_per_s']:.1f} samples/s "
              f"(x{r['vs_plain']:.1f} plain, x{r['vs_baseline_8_per_s']:.1f} the 8/s baseline), "
              f"waiting for data {r['data_wait_fraction']:.0%}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out} in {report['seconds']} s")


if __name__ == "__main__":
    main()
