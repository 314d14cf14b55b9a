"""Crash-safe writes: every file and directory embedlab saves appears whole or not at all.

A directory is written into a hidden sibling temp directory, each file fsynced, then swapped
into place. On Linux the swap is one atomic ``renameat2(RENAME_EXCHANGE)``; elsewhere it is two
renames and the previous copy stays on disk until the new one is in place.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from embedlab.core.errors import RefusedOverwrite, StoreError

__all__ = [
    "AS_AT_START",
    "atomic_directory",
    "atomic_write_bytes",
    "check_output_dir",
    "check_output_file",
    "check_replaceable",
    "fsync_directory",
    "fsync_file",
    "new_file_mode",
    "remove_stale_temps",
    "version_lock",
]

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_STALE_AFTER_S = 3600.0  # a temp without a recognisable owner is stale after this long


def _umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # pragma: no cover - not Linux
    os.umask(mask)
    return mask


def new_file_mode(path: str | os.PathLike) -> int:
    """The mode a file written at ``path`` gets: the replaced file's, else what an ordinary
    ``open`` gives under the umask (temp files start at 0600)."""
    try:
        return Path(path).stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def check_replaceable(
    target: str | os.PathLike, inputs: tuple[str | os.PathLike, ...] = ()
) -> None:
    """Refuse to replace ``target`` unless it is something embedlab wrote (or is empty).

    Never the working directory, the home or root directory, a directory that holds one of
    ``inputs``, or a directory with other contents: ``FileExistsError`` says what is there.
    """
    target = Path(target).absolute()
    if not target.exists() and not target.is_symlink():
        return
    real = target.resolve()
    if not target.is_dir():
        raise RefusedOverwrite(f"{target} exists and is not a directory; refusing to replace it")
    protected = {Path.cwd().resolve(), Path.home().resolve(), Path(real.anchor)}
    if real in protected or any(real in p.parents for p in protected if p != Path(real.anchor)):
        raise RefusedOverwrite(
            f"{target} is the working, home or root directory (or one of their parents); "
            "refusing to replace it: write to a new subdirectory instead"
        )
    for item in inputs:
        item_real = Path(item).absolute().resolve()
        if item_real == real or real in item_real.parents:
            raise RefusedOverwrite(
                f"{target} holds the input {item}; refusing to replace it: write elsewhere"
            )
    _check_only_embedlab_files(target, real)


def _check_only_embedlab_files(target: Path, real: Path) -> None:
    """RefusedOverwrite listing what in ``real`` embedlab did not write (see
    :func:`embedlab.store.ownership.foreign_paths`): replacing the folder would delete it."""
    from embedlab.store.ownership import foreign_paths, owned_paths

    foreign = foreign_paths(real, limit=6)
    if not foreign:
        return
    shown = ", ".join(foreign[:5]) + (" and more" if len(foreign) > 5 else "")
    if owned_paths(real) is None:
        raise RefusedOverwrite(
            f"{target} is not something embedlab wrote (it holds {shown}); refusing to replace "
            "it: choose a new directory or remove it yourself"
        )
    raise RefusedOverwrite(
        f"{target} holds files embedlab did not write ({shown}); replacing the folder would "
        "delete them: move them out of it, or write to a new directory"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(target: str | os.PathLike) -> list[Path]:
    """Remove temp siblings of ``target`` left by a killed write (their owner is gone).

    Temps are named ``.<name>.<pid>.<random>.tmp``; one whose process no longer runs is
    removed, as is an older-style temp without a pid that is over an hour old.
    """
    import time

    target = Path(target).absolute()
    parent = target.parent
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    prefix = f".{target.name}."
    try:
        candidates = [p for p in parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for p in candidates:
        rest = p.name[len(prefix) :]
        if not (rest.endswith(".tmp") or ".old-" in p.name):
            continue
        head = rest.split(".", 1)[0]
        if rest.startswith("old-"):
            head = rest[4:]
        if head.isdigit():
            stale = not _pid_alive(int(head))
        else:
            try:
                stale = time.time() - p.lstat().st_mtime > _STALE_AFTER_S
            except OSError:
                continue
        if stale:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
            removed.append(p)
    return removed


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a file's contents to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(path: str | os.PathLike) -> None:
    """Flush a directory entry (new names, renames) to stable storage, where the OS allows."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory, fsync and rename.

    The file gets the mode an ordinary ``open`` would give it (or the replaced file's mode).
    """
    path = Path(path)
    remove_stale_temps(path)
    mode = new_file_mode(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    try:
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(path.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2; False where the system cannot."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


#: ``atomic_directory(expect_stamp=...)`` default: the target must hold at the swap what it
#: held when the write began.
AS_AT_START: object = object()
_LOCK_WAIT_S = 120.0


@contextlib.contextmanager
def version_lock(target: str | os.PathLike) -> Iterator[None]:
    """Hold the write lock of directory ``target``: an exclusive ``flock`` on the folder
    that holds it (nothing is created; the kernel releases it when a writer's process dies,
    so a crashed writer never leaves it stuck). Other embedlab writers there wait."""
    import fcntl
    import time

    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        deadline = time.monotonic() + _LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"another embedlab process has been writing beside {target} for "
                        f"over {_LOCK_WAIT_S:.0f} s; try again when it is done"
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # releases the lock


def _check_version(target: Path, expect_stamp: str | None) -> None:
    """VersionConflict unless ``target`` holds the version (root-document checksum) the
    writer started from; called under :func:`version_lock`."""
    from embedlab.core.errors import VersionConflict
    from embedlab.store.manifest import saved_version, stamp_of

    if stamp_of(target) == expect_stamp:  # None: there is no root document (or no folder)
        return
    raise VersionConflict(
        f"{target} changed while this change was being made: it now holds "
        f"{saved_version(target)}, written by another process after this one read it. "
        "Nothing was written and that version stands; run again to apply this change to it"
    )


@contextlib.contextmanager
def atomic_directory(
    target: str | os.PathLike,
    overwrite: bool = False,
    expect_stamp: str | object | None = AS_AT_START,
) -> Iterator[Path]:
    """Yield a temp directory to fill; on success it replaces ``target`` in one step.

    If the body raises, the temp directory is removed and ``target`` is left untouched.
    With ``overwrite=False`` an existing ``target`` raises ``FileExistsError`` before any work;
    with ``overwrite=True`` only a directory embedlab wrote, holding nothing else (see
    :func:`check_replaceable`), is replaced. The swap is a compare-and-swap: under a lock
    beside ``target``, its root document must still have the checksum ``expect_stamp`` (by
    default, the one it had when this write began; None: there was nothing), else
    :class:`~embedlab.core.errors.VersionConflict` and nothing is written. The new directory keeps
    the old one's mode (else the umask's default), and temps left by a killed earlier write
    to the same place are removed first.
    """
    from embedlab.store.manifest import stamp_of

    target = Path(target).absolute()
    if target.exists() and not target.is_dir():
        raise RefusedOverwrite(f"{target} exists and is not a directory")
    if target.exists() and not overwrite:
        raise RefusedOverwrite(f"{target} already exists (pass overwrite=True to replace it)")
    check_replaceable(target)
    if expect_stamp is AS_AT_START:
        expect_stamp = stamp_of(target) if target.exists() else None
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    try:
        mode = target.stat().st_mode & 0o7777
    except OSError:
        mode = 0o777 & ~_umask()
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    )
    try:
        os.chmod(tmp, mode)
        yield tmp
        file_mode = 0o666 & ~_umask()
        for child in tmp.rglob("*"):
            if child.is_file() and not child.is_symlink():
                # as an ordinary open would make it (some writers make files 0600)
                os.chmod(child, file_mode)
                fsync_file(child)
        fsync_directory(tmp)
        with version_lock(target):
            _check_version(target, expect_stamp)  # type: ignore[arg-type]
            if target.exists() and not overwrite:
                raise RefusedOverwrite(f"{target} was created by another process meanwhile")
            check_replaceable(target)  # nothing of the user's arrived meanwhile
            if target.exists():
                if _exchange(tmp, target):
                    # tmp now holds the previous copy.
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    old = target.with_name(f".{target.name}.old-{os.getpid()}")
                    os.replace(target, old)
                    os.replace(tmp, target)
                    shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
            fsync_directory(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_writable_parent(path: Path) -> None:
    """Raise StoreError now, before any work, when ``path``'s folder cannot be written."""
    parent = path.parent
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise StoreError(f"cannot write {path}: {parent} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=parent, prefix=".embedlab-probe-"):
            pass
    except OSError as exc:
        raise StoreError(
            f"cannot write {path}: {parent} is not writable ({exc.strerror or exc})"
        ) from None


def _same_file(a: Path, b: Path) -> bool:
    """The same path, or two names (links) of one existing file."""
    if a.absolute() == b.absolute():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_file(
    path: str | os.PathLike, *, force: bool, inputs: tuple[str | os.PathLike, ...] = ()
) -> Path:
    """Check, before any work, that ``path`` may be written as an output file.

    An existing file needs ``force``; an output may never be one of ``inputs`` nor a
    directory; its folder must be writable.
    """
    path = Path(path)
    for item in inputs:
        if _same_file(path, Path(item)):
            raise RefusedOverwrite(f"{path} is also an input; write the output to another file")
    if path.is_dir():
        raise RefusedOverwrite(f"{path} is a directory; give a file name such as {path}/out.csv")
    if path.exists() and not force:
        raise RefusedOverwrite(f"{path} already exists; pass --force to replace it")
    _check_writable_parent(path)
    return path


def check_output_dir(
    path: str | os.PathLike, *, force: bool, inputs: tuple[str | os.PathLike, ...] = ()
) -> Path:
    """Check, before any work, that directory ``path`` may be written (or replaced).

    An existing one needs ``force`` and must be something embedlab wrote; never one that
    holds an input, the working directory or a parent of it; its folder must be writable.
    """
    path = Path(path)
    if path.exists() and not force:
        raise RefusedOverwrite(f"{path} already exists; pass --force to replace it")
    check_replaceable(path, inputs)  # refuses the input itself, or a folder holding one
    _check_writable_parent(path)
    return path
