"""Reading a saved directory without leaving it: every path a document inside it names is
resolved inside it (no absolute paths, no ``..``, no symbolic links), and the sizes a file
declares (an array's shape, an ONNX initialiser's dimensions) are checked against the
bytes on disk before anything is allocated.

embedlab never writes a symbolic link into a bundle, an EmbeddingSet or an index, so any
link found there was put there by someone else and is refused rather than followed.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import numpy as np

from embedlab.errors import StoreError

__all__ = ["check_npy", "check_onnx_sizes", "inside", "refuse_links"]


def inside(root: str | os.PathLike, rel: object, what: str) -> Path:
    """``root / rel`` for a path that a document in ``root`` names, refused (StoreError,
    naming ``what``) when it is not a relative path that stays inside ``root`` or when any
    part of it is a symbolic link."""
    root = Path(root)
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel:
        raise StoreError(f"{root}: {what} names the path {rel!r}, which is not a relative path")
    parts = PurePosixPath(rel).parts
    if PurePosixPath(rel).is_absolute() or ".." in parts:
        raise StoreError(
            f"{root}: {what} names the path {rel!r}, outside the directory; refusing to read "
            "it (a saved directory only refers to files inside itself)"
        )
    here = root
    for part in parts:
        if part == ".":
            continue
        here = here / part
        if here.is_symlink():
            raise StoreError(
                f"{root}: {what} {rel!r} goes through the symbolic link {here.name!r}; "
                "embedlab never writes links, refusing to follow it"
            )
    return root / PurePosixPath(rel)


def refuse_links(root: str | os.PathLike, what: str = "this directory") -> None:
    """StoreError when ``root`` (or anything below it) is a symbolic link: nothing in a saved
    directory may lead out of it."""
    root = Path(root)
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in [*dirs, *files]:
            p = Path(folder) / name
            if p.is_symlink():
                raise StoreError(
                    f"{root}: {p.relative_to(root)} in {what} is a symbolic link (to "
                    f"{os.readlink(p)}); embedlab never writes links, refusing to follow it"
                )


def check_npy(path: str | os.PathLike, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a ``.npy`` file's header declares, refused when the data those
    declare would not fit in the file (checked before ``np.load`` allocates anything)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            offset = fh.tell()
    except (OSError, ValueError, SyntaxError) as exc:
        raise StoreError(f"{what}: {path.name} is not a readable .npy file ({exc})") from None
    if dtype.hasobject:
        raise StoreError(f"{what}: {path.name} holds Python objects; refusing to load it")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if offset + need > size:
        raise StoreError(
            f"{what}: {path.name} declares {dtype}{tuple(shape)} ({need} bytes) but holds "
            f"{size - offset} bytes of data (truncated or crafted file)"
        )
    return tuple(int(s) for s in shape), dtype


def check_onnx_sizes(path: str | os.PathLike, what: str) -> None:
    """Refuse an ONNX graph whose initialisers point outside the file (external data) or
    declare more elements than their stored bytes hold. Reads the protobuf only."""
    import onnx
    from onnx import TensorProto

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises its own error types
        raise StoreError(f"{what}: {path.name} is not a readable ONNX graph ({exc})") from None
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        for init in graph.initializer:
            if init.data_location == TensorProto.EXTERNAL or init.external_data:
                raise StoreError(
                    f"{what}: {path.name} keeps initialiser {init.name!r} in an external file; "
                    "embedlab writes self-contained graphs only, refusing to load it"
                )
            if init.raw_data:
                itemsize = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
                n = int(np.prod(list(init.dims), dtype=object)) if init.dims else 1
                if n * itemsize != len(init.raw_data):
                    raise StoreError(
                        f"{what}: {path.name} initialiser {init.name!r} declares "
                        f"{list(init.dims)} ({n * itemsize} bytes) but stores "
                        f"{len(init.raw_data)} bytes (damaged or crafted graph)"
                    )
        for node in graph.node:
            for attr in node.attribute:
                if attr.g is not None and attr.HasField("g"):
                    graphs.append(attr.g)
                graphs.extend(attr.graphs)
