"""Optional native deformable im2col (``dcn_native.c``), built on first use with a C compiler.

The pure-PyTorch DCN spends most of its CPU time in ``grid_sample`` and in the passes around it
(grid construction, mask multiply, casts, transposes). ``dcn_native.c`` does the same sampling
in one pass per output pixel: it reads offsets and mask straight from the offset conv's
channels-last output, keeps coordinates in float32 (float64 for float64 inputs), and writes the
modulated samples in the layout the following matmul reads, in the matmul's dtype.

It is plain C with no Python or PyTorch headers, so building takes a couple of seconds and
needs only a C compiler (``$STVSR_CC``, else ``cc``/``gcc``/``clang`` on ``PATH``). The library
is cached under ``$STVSR_CACHE/kernels`` (default ``~/.cache/stvsr/kernels``), keyed by the
source, compiler, flags and CPU, and loaded with :mod:`ctypes`. Anything that goes wrong
(no compiler, failed build, unwritable cache, ``STVSR_NATIVE=0``) leaves :func:`library`
returning ``None`` and the callers use the pure-PyTorch path. Nothing is compiled at install
time and nothing is downloaded.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)

ABI_VERSION = 3
SOURCE = Path(__file__).with_name("dcn_native.c")
_BASE_FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared"]
# first that builds wins: OpenMP + this CPU's vector units; then without -march=native (a
# compiler that lacks it); then without OpenMP (the Python side splits rows over threads)
_FLAG_SETS = (
    [*_BASE_FLAGS, "-march=native", "-fopenmp"],
    [*_BASE_FLAGS, "-fopenmp"],
    [*_BASE_FLAGS, "-march=native"],
    _BASE_FLAGS,
)
_CODES = {torch.float32: "f", torch.bfloat16: "b", torch.float64: "d"}

_lock = threading.Lock()
# once tried: "lib" (CDLL or None), "why" (reason when None); when loaded also "openmp" (rows
# shared out by the kernel itself) and "max_t" (most (group, tap) pairs per pixel)
_state: dict[str, object] = {}


def enabled_by_env() -> bool:
    """False when ``STVSR_NATIVE`` is set to ``0``/``false``/``no``/``off``."""
    return os.environ.get("STVSR_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def kernel_dir() -> Path:
    root = os.environ.get("STVSR_CACHE") or os.path.join(Path.home(), ".cache", "stvsr")
    return Path(root) / "kernels"


def _compiler() -> str | None:
    cc = os.environ.get("STVSR_CC")
    if cc:
        return shutil.which(cc) or (cc if Path(cc).exists() else None)
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _cpu_id() -> str:
    """Model and feature flags of this CPU (``-march=native`` code is only valid on it)."""
    info = platform.machine() + platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags", "Features", "CPU part")):
                info += line
                if line.startswith(("flags", "Features")):
                    break
    except OSError:
        pass
    return info


def _build(cc: str, lib_path: Path) -> None:
    """Compile ``SOURCE`` into ``lib_path`` (atomically: a half-written file is never seen)."""
    errors = []
    lib_path.parent.mkdir(parents=True, exist_ok=True)
    for flags in _FLAG_SETS:
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=lib_path.parent)
        os.close(fd)
        try:
            res = subprocess.run(
                [cc, *flags, "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True,
                timeout=300,
            )
            if res.returncode == 0:
                os.replace(tmp, lib_path)
                return
            lines = res.stderr.strip().splitlines()
            errors.append(next((ln for ln in lines if "error" in ln), lines[0] if lines else "?"))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeError(f"{cc} failed: {errors}")


def _lib_path(cc: str) -> Path:
    """Where the library built by ``cc`` for this source and CPU is cached."""
    try:
        version = subprocess.run(
            [cc, "--version"], capture_output=True, text=True, timeout=60
        ).stdout.splitlines()[:1]
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"{cc} --version failed: {e}") from e
    key = hashlib.sha256(
        SOURCE.read_bytes() + repr((cc, version, _FLAG_SETS, _cpu_id())).encode()
    ).hexdigest()[:16]
    return kernel_dir() / f"dcn_native_{key}.so"


def _load() -> ctypes.CDLL:
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set STVSR_CC or install gcc/clang)")
    lib_path = _lib_path(cc)
    name = lib_path.name
    if not lib_path.exists():
        log.info("building the native DCN kernel with %s (once; a few seconds)", cc)
        try:
            _build(cc, lib_path)
        except OSError:  # unwritable cache: build into a private temporary folder
            lib_path = Path(tempfile.mkdtemp(prefix="stvsr-kernels-")) / name
            _build(cc, lib_path)
    try:
        lib = ctypes.CDLL(str(lib_path))
    except OSError:  # a damaged cached file (e.g. cut short by a full disk): build it again
        log.info("rebuilding the native DCN kernel (%s did not load)", lib_path)
        lib_path.unlink(missing_ok=True)
        _build(cc, lib_path)
        lib = ctypes.CDLL(str(lib_path))
    if lib.dcn_abi_version() != ABI_VERSION:
        raise RuntimeError(f"{lib_path} has ABI {lib.dcn_abi_version()}, expected {ABI_VERSION}")
    i64, i32, vp = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    argtypes = [vp, i64, i64, i32, i32, i32, i32, vp, i64, i64, i64, vp, i64, i64, i64, i32,
                i32, i32, i32, i32, i32, i32, i32, i32, i32, i32, i32, vp, i64, vp]
    for xc in "fb":
        for oc in "fb":
            for cc_ in "fb":
                fn = getattr(lib, f"dcn_cols_{xc}{oc}{cc_}")
                fn.argtypes, fn.restype = argtypes, None
    lib.dcn_cols_ddd.argtypes, lib.dcn_cols_ddd.restype = argtypes, None
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernel library (building it on first call), or ``None`` if unavailable."""
    if "lib" in _state:
        return _state["lib"]  # type: ignore[return-value]
    with _lock:
        if "lib" not in _state:
            if not enabled_by_env():
                _state.update(lib=None, why="disabled by STVSR_NATIVE=0")
            else:
                try:
                    lib = _load()
                    _state.update(lib=lib, why="", openmp=bool(lib.dcn_openmp()),
                                  max_t=int(lib.dcn_max_t()))
                except Exception as e:  # noqa: BLE001 - any failure means "use the pure path"
                    _state.update(lib=None, why=str(e))
                    log.info("native DCN kernel unavailable, using pure PyTorch: %s", e)
    return _state["lib"]  # type: ignore[return-value]


def available() -> bool:
    """Whether the native kernel is (or can be) built and loaded here."""
    return library() is not None


def unavailable_reason() -> str:
    """Why :func:`library` returned ``None`` (empty when it did not)."""
    library()
    return str(_state.get("why", ""))


_pool: ThreadPoolExecutor | None = None


def _executor(n: int) -> ThreadPoolExecutor:
    global _pool
    if _pool is None or _pool._max_workers < n:
        _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="stvsr-dcn")
    return _pool


def supports(x_dtype: torch.dtype, om_dtype: torch.dtype, cols_dtype: torch.dtype,
             pairs: int) -> bool:
    """Whether the kernel loads and has a variant for features ``x_dtype``, offsets/mask
    ``om_dtype`` and samples ``cols_dtype`` (each float32 or bfloat16, or all float64) with
    ``pairs = deform_groups * kh * kw`` (group, tap) pairs per pixel."""
    dts = (x_dtype, om_dtype, cols_dtype)
    ok = all(d == torch.float64 for d in dts) or all(
        d in (torch.float32, torch.bfloat16) for d in dts
    )
    return ok and library() is not None and pairs <= int(_state["max_t"])


def deform_cols(
    x: Tensor,
    offset: Tensor,
    mask: Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    dg: int,
    rows: tuple[int, int],
    cols: Tensor,
    mask_logits: bool = False,
    threads: int | None = None,
) -> float:
    """Fill ``cols`` with the modulated samples of output rows ``rows = (r0, r1)``.

    Args:
        x: ``(H, W, Cin)`` view with unit channel stride (one image of a channels-last map).
        offset: ``(2*dg*K, Ho, Wo)`` and ``mask``: ``(dg*K, Ho, Wo)``, any strides, same dtype.
        cols: ``((r1 - r0) * Wo, Cin * K)`` contiguous, float32/bfloat16 (float64 with float64
            inputs); column ``(g * K + k) * (Cin / dg) + ci`` holds group ``g``, tap ``k``,
            channel ``ci`` of the group.
        mask_logits: apply a sigmoid to ``mask`` first.
        threads: worker threads (default ``torch.get_num_threads()``), each given whole rows,
            when the library was built without OpenMP; with OpenMP the kernel shares the rows
            out over the OpenMP team of the calling thread (PyTorch's own runtime and size).

    Returns:
        ``sum |offset|`` over the rows (float64 accumulation of per-pixel float sums).
    """
    lib = library()
    if lib is None:
        raise RuntimeError(f"native DCN kernel unavailable: {unavailable_reason()}")
    h, w, cin = x.shape
    _, ho, wo = offset.shape
    kh, kw = kernel
    r0, r1 = rows
    if x.stride(2) != 1 or not cols.is_contiguous():
        raise ValueError("x needs unit channel stride and cols must be contiguous")
    if cols.shape != ((r1 - r0) * wo, cin * kh * kw):
        raise ValueError(f"cols has shape {tuple(cols.shape)}, expected "
                         f"{((r1 - r0) * wo, cin * kh * kw)}")
    if offset.dtype == torch.float64:
        fn = lib.dcn_cols_ddd
    else:
        fn = getattr(lib, f"dcn_cols_{_CODES[x.dtype]}{_CODES[offset.dtype]}{_CODES[cols.dtype]}")
    if r1 <= r0:
        return 0.0
    if offset.shape[0] // 2 > int(_state["max_t"]):
        raise ValueError(f"native DCN supports at most {_state['max_t']} (group, tap) pairs")
    n = 1 if _state.get("openmp") else max(1, min(threads or torch.get_num_threads(), r1 - r0))
    bounds = [r0 + (r1 - r0) * i // n for i in range(n + 1)]
    sums = (ctypes.c_double * n)()
    row_bytes = wo * cols.shape[1] * cols.element_size()
    base = cols.data_ptr()

    def part(i: int) -> None:
        a, b = bounds[i], bounds[i + 1]
        fn(
            x.data_ptr(), x.stride(0), x.stride(1), h, w, cin, dg,
            offset.data_ptr(), *offset.stride(), mask.data_ptr(), *mask.stride(),
            int(mask_logits), kh, kw, *stride, *padding, *dilation, wo, a, b,
            base + (a - r0) * row_bytes, cols.shape[1], ctypes.addressof(sums) + 8 * i,
        )

    if n == 1:
        part(0)
    else:
        list(_executor(n).map(part, range(n)))  # ctypes releases the GIL during the calls
    return float(sum(sums))
