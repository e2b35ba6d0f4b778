"""The ``stvsr export`` subcommand (ONNX)."""

from __future__ import annotations

import argparse

from stvsr.errors import StvsrError


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size must look like 180x320 (HxW), got {text!r}") from None
    return h, w


def add_parser(sub) -> None:  # sub: argparse's private subparsers type
    """Register ``stvsr export MODEL OUT.onnx`` on the subparsers ``sub``."""
    from stvsr.export.onnx_export import DCN_MODES, DEFAULT_OPSET, TOLERANCE

    p = sub.add_parser(
        "export", help="export a model to ONNX and check it against PyTorch (onnxruntime)",
        description="Export MODEL to ONNX (input 'lr' (1, N, 3, H, W) RGB in [0, 1]; output "
                    "'hr'), run onnxruntime and PyTorch on the same random input, print the "
                    "largest difference (fails above 1e-4) and write OUT.json describing the "
                    "graph. Needs pip install 'stvsr[onnx]'.")
    p.add_argument("model", help="preset (stvsr models), e.g. basicvsr-vimeo-bi, edvr-m, sfnet-s")
    p.add_argument("output", help="the .onnx file to write")
    p.add_argument("--frames", type=int, default=None,
                   help="input frames N (default: the window of window models, 5 for recurrent, "
                        "4 for space-time models)")
    p.add_argument("--size", type=_size, default=(64, 64),
                   help="LR input size HxW of the graph and the check (default 64x64)")
    p.add_argument("--dynamic-size", action="store_true",
                   help="keep H and W symbolic (checked at a second size as well)")
    p.add_argument("--opset", type=int, default=None,
                   help=f"ONNX opset (default {DEFAULT_OPSET}; DeformConv needs 19)")
    p.add_argument("--dcn", choices=DCN_MODES, default="auto",
                   help="EDVR's deformable conv: ONNX DeformConv, or a GridSample graph for "
                        "runtimes without DeformConv (default auto: DeformConv from opset 19)")
    p.add_argument("--weights", default="default",
                   help="checkpoint file or registered weights name (default: the preset's own)")
    p.add_argument("--tolerance", type=float, default=TOLERANCE,
                   help=f"largest allowed |onnx - torch| (default {TOLERANCE:g})")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    import sys

    from stvsr.export.onnx_export import export_onnx, has_weights
    from stvsr.registry import create_model, is_untrained

    if not str(args.output).endswith(".onnx"):
        raise StvsrError(f"output {args.output} should end in .onnx")
    model = create_model(args.model, weights=args.weights)
    if is_untrained(model) and not has_weights(model):
        print(f"warning: {args.model} has no trained weights (random initialisation); "
              "pass --weights FILE for a useful model", file=sys.stderr)
    export_onnx(args.model, args.output, frames=args.frames, size=args.size,
                dynamic_size=args.dynamic_size, opset=args.opset, dcn=args.dcn,
                check=not args.no_check, tolerance=args.tolerance, model=model)
