"""CPU time and peak memory per output frame of EDVR, by DCN implementation and precision.

For every preset × DCN implementation × precision this measures

* ``window``: one forward of a ``(1, N, 3, H, W)`` window (= one output frame) of
  ``stvsr.infer.optimize(model, "cpu", precision)`` (what the engine runs), with the time
  spent inside the ``DCNv2Pack`` modules reported separately (``dcn_s``);
* ``plain`` (with ``--plain``): the same window through the plain model under autocast;
* ``naive`` / ``cached``: :class:`stvsr.infer.sliding.SlidingWindowRunner` over a short clip
  (``--clip`` frames), time per output frame, without / with per-frame feature caching (only
  when ``stvsr.infer.sliding`` exists).

and, with ``--agreement-clip DIR`` (default: REDS ``LR_x4_demo/000`` under ``../shared/data``
when present), the Y-PSNR between the fp32 and bf16 outputs of each preset on the first
``num_frames`` frames of a real clip ("fp32 vs bf16 output agreement in dB"; random-init
weights, so it measures precision loss, not restoration quality).

By default glibc is told to keep freed memory (:func:`stvsr.ops.memory.tune_cpu_allocator`,
~20 % less CPU time here); ``--no-tune-malloc`` measures glibc's defaults.

Peak memory (meaningful with ``--no-tune-malloc``: a tuned heap keeps earlier peaks resident,
so later rows show ~0) is the growth of the resident set (``VmHWM - VmRSS`` before the run,
after resetting the high-water mark through ``/proc/self/clear_refs``; on systems without it,
the growth of ``ru_maxrss``, which misses peaks below an earlier one).

Usage::

    .venv/bin/python benchmarks/edvr_speed.py [--presets edvr-m edvr-l] [--height 180]
        [--width 320] [--precisions fp32 bf16] [--impls pure native torchvision] [--clip 5]
        [--modes window naive cached] [--plain] [--threads 2] [--repeat 1] [--json out.json]
        [--quick]
        [--no-tune-malloc] [--agreement-clip DIR | --agreement-clip none] [--frames-dir DIR]
        [--offset-std 2.0] [--agree-impls] [--gt-clip HR_DIR [--gt-frames N]]

Timed frames are the REDS demo clip (``--frames-dir``) when present, and every DCN gets random
offset predictors calibrated to ``--offset-std`` pixels (a fresh model predicts zero offsets).

Wall-clock numbers depend on what else runs on the machine: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import stvsr
from stvsr.infer.optimize import optimize, precision_context
from stvsr.ops import dcn
from stvsr.ops.dcn import DCNv2Pack, ModulatedDeformConv2d


def _proc_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(fn: Callable[[], object], repeat: int) -> dict[str, float]:
    """Run ``fn`` ``repeat`` times: min/median wall seconds, min CPU seconds (all threads of this
    process; less sensitive than wall time to other processes) and peak RSS growth (MiB)."""
    times = []
    cpu = []
    peak_mib = 0.0
    for _ in range(repeat):
        can_reset = _reset_peak()
        rss0 = _proc_kib("VmRSS") if can_reset else None
        max0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        hwm = _proc_kib("VmHWM") if can_reset else None
        if rss0 is not None and hwm is not None:
            grow = (hwm - rss0) / 1024
        else:
            grow = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - max0) / 1024
        peak_mib = max(peak_mib, grow)
    times.sort()
    return {
        "min_s": times[0], "median_s": times[len(times) // 2], "cpu_s": min(cpu),
        "peak_mib": peak_mib,
    }


class DcnTimer:
    """Accumulates wall and CPU time spent inside the model's DCNv2Pack modules (via hooks)."""

    def __init__(self, model: nn.Module) -> None:
        self.total = 0.0
        self.cpu = 0.0
        self._t0: dict[int, tuple[float, float]] = {}
        self._handles = []
        for m in model.modules():
            if isinstance(m, DCNv2Pack):
                self._handles.append(m.register_forward_pre_hook(self._pre))
                self._handles.append(m.register_forward_hook(self._post))

    def _pre(self, mod: nn.Module, _inp) -> None:
        self._t0[id(mod)] = (time.perf_counter(), time.process_time())

    def _post(self, mod: nn.Module, _inp, _out) -> None:
        t0, c0 = self._t0.pop(id(mod))
        self.total += time.perf_counter() - t0
        self.cpu += time.process_time() - c0

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def spread_offsets(model: nn.Module, window: torch.Tensor, std: float, seed: int = 0) -> dict:
    """Give every ``DCNv2Pack`` random offset/mask predictors whose offsets on ``window`` have a
    standard deviation of about ``std`` pixels (a fresh EDVR predicts all-zero offsets, which
    samples the map on the pixel grid: the cheapest, least realistic access pattern).

    Returns the measured mean |offset| and std per pack after calibration.
    """
    packs = {n: m for n, m in model.named_modules() if isinstance(m, DCNv2Pack)}
    gen = torch.Generator().manual_seed(seed)
    stats: dict[str, list[float]] = {}

    def grab(name):
        def hook(_m, _inp, out):
            n = out.shape[1] // 3
            o = out[:, : 2 * n].float()
            stats[name] = [float(o.abs().mean()), float(o.std())]
        return hook

    fast = optimize(model, "cpu", "fp32")  # hooked convs still run as modules
    with torch.no_grad():
        for p in packs.values():
            w = p.conv_offset.weight
            w.copy_(torch.randn(w.shape, generator=gen) * 0.01)
        # measure, rescale, twice (the levels feed each other), then measure the result
        for rnd in range(3):
            handles = [p.conv_offset.register_forward_hook(grab(n)) for n, p in packs.items()]
            fast(window)
            for h in handles:
                h.remove()
            for n, p in packs.items():
                if rnd < 2 and stats[n][1] > 0:
                    p.conv_offset.weight.mul_(std / stats[n][1])
    return {n: {"mean_abs": a, "std": s} for n, (a, s) in stats.items()}


def set_impl(model: nn.Module, impl: str) -> int:
    """Set the DCN implementation of every deformable conv in ``model``; returns their count."""
    n = 0
    for m in model.modules():
        if isinstance(m, ModulatedDeformConv2d):
            m.impl = impl
            n += 1
    return n


def bench_preset(
    name: str,
    args: argparse.Namespace,
    impls: list[str],
    sliding_ok: bool,
) -> list[dict]:
    model = stvsr.create_model(name, weights=None)
    n = int(model.num_frames)
    h, w = args.height, args.width
    frames = real_frames(args.frames_dir, max(n, args.clip), h, w)
    if frames is None:
        gen = torch.Generator().manual_seed(0)
        frames = torch.rand(max(n, args.clip), 3, h, w, generator=gen)
    window = frames[:n][None]
    clip = frames[: args.clip]
    rows = []
    if args.offset_std > 0:
        offs = spread_offsets(model, window, args.offset_std)
        mean_abs = sum(v["mean_abs"] for v in offs.values()) / max(1, len(offs))
        print(f"{name}: random offset predictors, mean |offset| {mean_abs:.2f} px", flush=True)
    fast = {prec: optimize(model, "cpu", prec) for prec in args.precisions}
    with torch.no_grad():
        # warm-up (kernel selection, allocator, the wrappers' weight caches) on a small input
        for net in fast.values():
            net(torch.rand(1, n, 3, 32, 32))
        for impl in impls:
            set_impl(model, impl)
            for prec in args.precisions:
                net = fast[prec]
                base = {"preset": name, "impl": impl, "precision": prec, "size": f"{h}x{w}"}
                if args.agree_impls and impls[0] != impl:
                    set_impl(model, impls[0])
                    ref = net(window)
                    set_impl(model, impl)
                    diff = float((net(window) - ref).abs().max())
                    print(f"{name} {prec}: max |{impl} - {impls[0]}| = {diff:.2e}", flush=True)
                    base["max_abs_diff_vs_" + impls[0]] = diff
                if "window" in args.modes:
                    timer = DcnTimer(model)
                    res = measure(lambda net=net: net(window), args.repeat)
                    timer.close()
                    res["dcn_s"] = timer.total / args.repeat
                    res["dcn_cpu_s"] = timer.cpu / args.repeat
                    rows.append({**base, "mode": "window", **res})
                    _print_row(rows[-1])
                if args.plain:
                    def plain(prec=prec) -> None:
                        with precision_context(prec, "cpu"):
                            model(window)

                    timer = DcnTimer(model)
                    res = measure(plain, args.repeat)
                    timer.close()
                    res["dcn_s"] = timer.total / args.repeat
                    res["dcn_cpu_s"] = timer.cpu / args.repeat
                    rows.append({**base, "mode": "plain", **res})
                    _print_row(rows[-1])
                for mode in ("naive", "cached"):
                    if mode not in args.modes or not sliding_ok:
                        continue
                    from stvsr.infer.sliding import SlidingWindowRunner

                    runner = SlidingWindowRunner(net, cache=mode == "cached")

                    def run(runner=runner) -> None:
                        for _ in runner.run(clip):
                            pass

                    res = measure(run, args.repeat)
                    for key in ("min_s", "median_s", "cpu_s"):
                        res[key] /= args.clip
                    rows.append({**base, "mode": mode, **res})
                    _print_row(rows[-1])
    return rows


HEADER = (
    f"{'preset':<8} {'impl':<12} {'prec':<5} {'mode':<7} {'s/frame':>8} {'median':>8} "
    f"{'cpu s':>8} {'dcn s':>7} {'dcn cpu':>8} {'peak MiB':>9}"
)


def _print_row(r: dict) -> None:
    dcn_s = f"{r['dcn_s']:7.3f} {r['dcn_cpu_s']:8.3f}" if "dcn_s" in r else f"{'-':>7} {'-':>8}"
    print(
        f"{r['preset']:<8} {r['impl']:<12} {r['precision']:<5} {r['mode']:<7} "
        f"{r['min_s']:8.3f} {r['median_s']:8.3f} {r['cpu_s']:8.3f} {dcn_s} {r['peak_mib']:9.1f}",
        flush=True,
    )


DEFAULT_CLIP = Path(__file__).resolve().parents[2] / "shared/data/REDS/LR_x4_demo/000"


def real_frames(
    clip_dir: Path | None, n: int | None = None, h: int | None = None, w: int | None = None
) -> torch.Tensor | None:
    """The first ``n`` frames (all when ``None``) of the image folder ``clip_dir`` as
    ``(n, 3, h, w)`` in [0, 1], cropped to ``h x w`` when given; None when there is no such
    folder or its frames are too few or too small."""
    from stvsr.data.video import VideoError, list_frame_files, read_image
    from stvsr.infer.engine import frame_to_tensor

    if clip_dir is None or not clip_dir.is_dir():
        return None
    try:
        files = list_frame_files(clip_dir)[:n]
    except VideoError:
        return None
    if n is not None and len(files) < n:
        return None
    x = torch.stack([frame_to_tensor(read_image(f)) for f in files])
    h, w = h or x.shape[-2], w or x.shape[-1]
    if x.shape[-2] < h or x.shape[-1] < w:
        return None
    return x[..., :h, :w].contiguous()


def fp32_bf16_agreement(name: str, clip_dir: Path, offset_std: float) -> dict:
    """Y-PSNR (dB) between the fp32 and bf16 outputs of ``name`` (random init, seed 0, offsets
    spread as in the timing runs) on the first ``num_frames`` PNG frames of ``clip_dir``; also
    the max abs difference."""
    from stvsr.metrics import psnr, to_uint8

    torch.manual_seed(0)
    model = stvsr.create_model(name, weights=None).eval()
    n = int(model.num_frames)
    frames = real_frames(clip_dir, n)
    if frames is None:
        raise SystemExit(f"{clip_dir} has fewer than {n} frames")
    x = frames[None]
    if offset_std > 0:
        spread_offsets(model, x, offset_std)
    with torch.no_grad():
        a = optimize(model, "cpu", "fp32")(x)[0]
        b = optimize(model, "cpu", "bf16")(x)[0]
    return {
        "preset": name, "clip": str(clip_dir), "lr_size": f"{x.shape[-2]}x{x.shape[-1]}",
        "y_psnr_fp32_vs_bf16_db": psnr(to_uint8(a), to_uint8(b), y_channel=True),
        "max_abs_diff": float((a - b).abs().max()),
    }


def precision_vs_gt(name: str, gt_dir: Path, offset_std: float, max_frames: int) -> dict:
    """Mean Y-PSNR against the ground truth of one HR clip (BI x4 inputs, cached sliding
    window) for fp32 and bf16, same random weights (seed 0, offsets spread as in the timing
    runs): how much the precision alone moves the score. Random weights restore nothing; the
    difference between the two numbers is what this measures."""
    import numpy as np

    from stvsr.data.degradations import degrade_bi, modcrop
    from stvsr.infer.sliding import SlidingWindowRunner, window_indices
    from stvsr.metrics import psnr, to_uint8

    hr = real_frames(gt_dir)
    if hr is None:
        raise SystemExit(f"no image frames in {gt_dir}")
    hr = modcrop(hr[:max_frames], 4)
    lr = degrade_bi(hr, 4)
    torch.manual_seed(0)
    model = stvsr.create_model(name, weights=None).eval()
    if offset_std > 0:
        idx = window_indices(len(lr) // 2, len(lr), int(model.num_frames))
        spread_offsets(model, lr[idx][None], offset_std)
    res: dict[str, object] = {"preset": name, "clip": str(gt_dir), "frames": len(hr)}
    for prec in ("fp32", "bf16"):
        runner = SlidingWindowRunner(optimize(model, "cpu", prec), cache=True)
        scores = [
            psnr(to_uint8(out), to_uint8(gt), y_channel=True)
            for out, gt in zip(runner.run(lr), hr, strict=True)
        ]
        res[f"y_psnr_{prec}_db"] = float(np.mean(scores))
    res["bf16_minus_fp32_db"] = res["y_psnr_bf16_db"] - res["y_psnr_fp32_db"]  # type: ignore[operator]
    return res


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["edvr-m", "edvr-l"])
    p.add_argument("--height", type=int, default=180)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--impls", nargs="+", default=None,
                   help="DCN implementations (default: pure, plus native if it builds and "
                   "torchvision if it imports)")
    p.add_argument("--modes", nargs="*", default=["window", "naive", "cached"],
                   choices=["window", "naive", "cached"])
    p.add_argument("--plain", action="store_true",
                   help="also time one window through the plain model (autocast, no fast "
                   "kernels)")
    p.add_argument("--clip", type=int, default=5, help="frames in the sliding-window clip")
    p.add_argument("--frames-dir", type=Path, default=DEFAULT_CLIP,
                   help="PNG frames timed (cropped to the size; random frames if unusable)")
    p.add_argument("--agree-impls", action="store_true",
                   help="also report each implementation's max abs output difference from the "
                   "first one (one extra forward per implementation and precision)")
    p.add_argument("--gt-clip", type=Path, default=None,
                   help="HR clip folder (e.g. ../shared/data/Vid4/GT/calendar): also score fp32 "
                   "and bf16 against it (BI x4 inputs)")
    p.add_argument("--gt-frames", type=int, default=1000, help="first N frames of --gt-clip")
    p.add_argument("--offset-std", type=float, default=2.0,
                   help="std (px) of the random DCN offsets; 0 keeps a fresh model's zeros")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test in seconds")
    p.add_argument("--no-tune-malloc", action="store_true",
                   help="keep glibc's default allocator settings (page faults on every map)")
    p.add_argument("--agreement-clip", default=None,
                   help="PNG clip for the fp32-vs-bf16 Y-PSNR (default: REDS demo 000; 'none')")
    args = p.parse_args(argv)
    if args.quick:
        args.height, args.width, args.clip = 32, 48, 3
        if args.presets == ["edvr-m", "edvr-l"]:
            args.presets = ["edvr-m"]
    if args.threads:
        torch.set_num_threads(args.threads)
    from stvsr.ops.memory import tune_cpu_allocator

    tuned = tune_cpu_allocator(not args.no_tune_malloc)
    from stvsr.ops import native

    impls = args.impls or (
        ["pure"] + (["native"] if native.available() else [])
        + (["torchvision"] if dcn.torchvision_available() else [])
    )
    for impl in impls:
        if impl == "torchvision" and not dcn.torchvision_available():
            raise SystemExit("torchvision does not import here; drop it from --impls")
        if impl == "native" and not native.available():
            raise SystemExit(f"the native DCN kernel is unavailable ({native.unavailable_reason()})"
                             "; drop it from --impls")
    try:
        import stvsr.infer.sliding  # noqa: F401

        sliding_ok = True
    except ImportError:
        sliding_ok = False
    info = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "load_avg_start": list(__import__("os").getloadavg()),
        "torchvision": dcn.torchvision_available(),
        "native_dcn": native.available(),
        "sliding": sliding_ok,
        "malloc_tuned": tuned and not args.no_tune_malloc,
    }
    print(f"torch {info['torch']}, {info['threads']} threads, load avg {info['load_avg_start']}")
    print(HEADER)
    rows = []
    for name in args.presets:
        rows += bench_preset(name, args, impls, sliding_ok)
    agree = []
    clip_arg = args.agreement_clip
    clip_dir = DEFAULT_CLIP if clip_arg is None else Path(clip_arg)
    if clip_arg != "none" and not args.quick and clip_dir.is_dir():
        for name in args.presets:
            agree.append(fp32_bf16_agreement(name, clip_dir, args.offset_std))
            r = agree[-1]
            print(f"{name}: fp32 vs bf16 output agreement on {r['clip']} ({r['lr_size']}): "
                  f"Y-PSNR {r['y_psnr_fp32_vs_bf16_db']:.2f} dB, max abs diff "
                  f"{r['max_abs_diff']:.4f}", flush=True)
    vs_gt = []
    if args.gt_clip is not None:
        for name in args.presets:
            vs_gt.append(precision_vs_gt(name, args.gt_clip, args.offset_std, args.gt_frames))
            r = vs_gt[-1]
            print(f"{name}: Y-PSNR vs GT on {r['clip']} ({r['frames']} frames, BI x4, random "
                  f"weights): fp32 {r['y_psnr_fp32_db']:.4f} dB, bf16 {r['y_psnr_bf16_db']:.4f} "
                  f"dB, difference {r['bf16_minus_fp32_db']:+.4f} dB", flush=True)
    info["load_avg_end"] = list(__import__("os").getloadavg())
    print(f"load avg at end: {info['load_avg_end']}")
    if args.json:
        meta = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        doc = {"info": info, "args": meta, "results": rows, "agreement": agree,
               "precision_vs_gt": vs_gt}
        args.json.write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
