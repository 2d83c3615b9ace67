"""Output files: atomic writes that honour the umask, overwrite checks, safe names, paths kept under a folder.

Every file cinerecon writes goes through :func:`atomic_output`: the content is written to
a temporary file beside the target and renamed over it only when complete, so an
interrupted run never leaves a half-written file under the final name. The temporary
file is created with mode ``0o666`` filtered by the process umask (the same mode
``open()`` would give), so outputs are as readable as any other file the user writes
(``tempfile.mkstemp`` would make them ``0600``). Its name, ``.<name>.<random>.part``,
ends in ``.part`` so that a file left behind by a killed process never matches an
input pattern such as ``*.h5``, ``*.pt`` or ``*.mat``.

Names taken from file contents or flags (a slice's ``view`` attribute, ``--name``, a
mask key) go through :func:`safe_name` before they become part of a path, and output
paths are checked with :func:`inside` to stay under the output folder.
"""

from __future__ import annotations

import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from .errors import ConfigError, OutputExistsError

TEMP_SUFFIX = ".part"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


def check_writable(paths: Iterable[str | Path], overwrite: bool) -> None:
    """Raise OutputExistsError naming every existing path unless ``overwrite``.

    A symbolic link counts as existing even when it points nowhere: it is the user's.
    """
    existing = [str(p) for p in paths if os.path.lexists(p)]
    if existing and not overwrite:
        verb = "exists" if len(existing) == 1 else "exist"
        raise OutputExistsError(f"{', '.join(existing)} already {verb}; refusing to overwrite existing output "
                                "(--overwrite, or overwrite=True in Python, replaces it)")


def check_can_write(folder: str | Path) -> None:
    """Refuse, before any work, an output folder that cannot be written (read-only file system, permissions).

    Creates and removes a temporary file in ``folder``, or in its nearest existing parent when
    it does not exist yet (which then must allow creating it).

    Raises:
        ConfigError: one line naming the folder and the system's reason.
    """
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        tmp = _create_temp(probe / "write-probe")
        tmp.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write to {folder}: {e.strerror or e}") from None


def _create_temp(path: Path) -> Path:
    """Create an empty ``.<name>.<random>.part`` beside ``path`` with mode 0o666 & ~umask."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_output(path: str | Path, overwrite: bool = False, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary file beside ``path`` that replaces ``path`` only when the block completes.

    The temporary file exists (empty) when the block starts; writers may truncate or
    replace it. On any exception it is removed and ``path`` is left as it was.

    Args:
        path: the final file; its folder is created when missing.
        overwrite: allow replacing an existing ``path``.
        fsync: flush the file (and its folder entry) to disk before returning, for files
            that must survive a power loss (checkpoints).

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False (checked before anything is created).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(f"{path} is a folder; give the file to write")
    check_writable([path], overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path)
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
        if fsync:
            _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str, fsync: bool = False) -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_output` (replaces an existing file; mode from
    the umask; ``fsync`` as there)."""
    path = Path(path)
    with atomic_output(path, overwrite=True, fsync=fsync) as tmp:
        tmp.write_text(text)
    return path


def safe_name(text: object, fallback: str = "unnamed") -> str:
    """``text`` reduced to one safe file-name component.

    Path separators and every character outside ``A-Za-z0-9._+=-`` become ``_``; runs of
    dots are reduced to one and leading / trailing dots and underscores are removed, so
    the result has no separator, is never ``.`` or ``..`` and never hidden.
    ``"../../etc"`` -> ``"etc"``, ``"sax"`` -> ``"sax"``, ``"P001/slice03"`` -> ``"P001_slice03"``.

    Args:
        text: a name from a file's contents or a flag.
        fallback: returned when nothing safe is left.
    """
    s = _UNSAFE.sub("_", str(text))
    s = re.sub(r"\.{2,}", ".", s).strip("._")
    return s[:200] or fallback


def inside(root: str | Path, path: str | Path, what: str = "output") -> Path:
    """Return ``path`` after checking that it resolves to a location under ``root``.

    Raises:
        ConfigError: ``path`` would be written outside ``root`` (naming both).
    """
    root_r, path_r = Path(root).resolve(), Path(path).resolve()
    if path_r != root_r and not path_r.is_relative_to(root_r):
        raise ConfigError(f"{what} {path} would be written outside {root}; refusing")
    return Path(path)
