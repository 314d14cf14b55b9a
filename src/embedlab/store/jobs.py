"""Resumable jobs: a work folder beside a job's output that keeps what the job is (its
input and options) and the numbered pieces it has finished, so that a job stopped at any
point — Ctrl-C, a crash, ``kill -9`` — and started again does only the missing pieces.

``.<output name>.partial/``::

    job.json        the job's description (input path, size and mtime, options, model...)
    pieces/00000    one finished piece (a file or a folder), each made in one step: written
    pieces/00001    under a temporary name, then renamed
    ...

A work folder of another job (other input or options) is discarded on start, and so is the
same job's with ``restart``; after a failure with no finished piece it is removed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from embedlab.core.errors import EmbedlabError, RefusedOverwrite
from embedlab.store.atomic import fsync_directory, fsync_file

__all__ = ["JobFolder"]

log = logging.getLogger("embedlab")

JOB_FILE = "job.json"


CRASH_AT = "EMBEDLAB_CRASH_AT"


def _crash_point(when: str, i: int) -> None:
    """The resumption tests' deterministic kill: with ``EMBEDLAB_CRASH_AT=before-commit:N``
    (piece N written, not yet finished) or ``after-commit:N`` this process is SIGKILLed
    there, as a crash would stop it, instead of at a moment chosen by a timer."""
    if os.environ.get(CRASH_AT) == f"{when}:{i}":
        os.kill(os.getpid(), signal.SIGKILL)


def _abandoned_start(path: Path) -> bool:
    """A work folder cut off before its job.json was written: nothing but an empty pieces
    folder and the job file's temp (anything else may be someone's: never removed)."""
    if path.is_symlink() or not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    pieces = path / "pieces"
    return names <= {"pieces", "job.tmp"} and (
        not pieces.exists() or (pieces.is_dir() and not any(pieces.iterdir()))
    )


class JobFolder:
    """The work folder of the job that writes ``output`` (see the module doc)."""

    def __init__(
        self, output: str | os.PathLike, job: Mapping[str, Any], *, restart: bool = False
    ) -> None:
        self.output = Path(output).absolute()
        self.path = self.output.with_name(f".{self.output.name}.partial")
        self.pieces = self.path / "pieces"
        self.job = json.loads(json.dumps(dict(job), default=str))
        job_file = self.path / JOB_FILE
        if self.path.exists():
            try:
                old = json.loads(job_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                old = None
            if old is None and not _abandoned_start(self.path):
                raise RefusedOverwrite(
                    f"{self.path} is in the way of this job's work folder and is not one "
                    "embedlab made (no job.json); move it, or write the output elsewhere"
                )
            if restart or old != self.job:  # another job's pieces cannot be reused
                if old is not None and old != self.job:
                    log.warning(
                        "%s: discarding an unfinished run with other input or options", self.path
                    )
                shutil.rmtree(self.path)
        self.pieces.mkdir(parents=True, exist_ok=True)
        if not job_file.is_file():
            tmp = job_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.job, indent=1), encoding="utf-8")
            fsync_file(tmp)
            os.replace(tmp, job_file)
            fsync_directory(self.path)
        for stale in self.pieces.glob("*.tmp*"):  # a piece cut off mid-write
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)

    @classmethod
    def attach(cls, path: str | os.PathLike) -> JobFolder:
        """The work folder at ``path`` as another process sees it (a Ray worker writing
        pieces): nothing is checked, discarded or cleaned."""
        folder = object.__new__(cls)
        folder.path = Path(path)
        folder.output = folder.path.with_name(folder.path.name[1:].removesuffix(".partial"))
        folder.pieces = folder.path / "pieces"
        try:
            folder.job = json.loads((folder.path / JOB_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EmbedlabError(
                f"{folder.path}: this job's work folder is not visible on {socket.gethostname()}"
                ": every worker of a Ray cluster must see the output's folder at the same path "
                "(shared storage)"
            ) from None
        return folder

    def piece(self, i: int) -> Path:
        """Where finished piece ``i`` lives."""
        return self.pieces / f"{i:05d}"

    def temp(self, i: int) -> Path:
        """A temporary name to build piece ``i`` under (then :meth:`commit`)."""
        tmp = self.pieces / f"{i:05d}.tmp{os.getpid()}-{threading.get_ident()}"
        if tmp.is_dir():
            shutil.rmtree(tmp)
        else:
            tmp.unlink(missing_ok=True)
        return tmp

    def commit(self, i: int, tmp: Path) -> Path:
        """Make the piece built at ``tmp`` finished piece ``i``, in one step (synced)."""
        for f in [tmp] if tmp.is_file() else [p for p in tmp.rglob("*") if p.is_file()]:
            fsync_file(f)
        _crash_point("before-commit", i)
        final = self.piece(i)
        if final.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_directory(self.pieces)
        _crash_point("after-commit", i)
        return final

    def finished(self) -> set[int]:
        return {int(p.name) for p in self.pieces.iterdir() if p.name.isdigit()}

    def abandon(self) -> None:
        """After a failure: remove the work folder if no piece is finished (nothing to
        resume), keep it otherwise."""
        if not self.finished():
            shutil.rmtree(self.path, ignore_errors=True)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
