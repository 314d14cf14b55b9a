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

from embedlab.core.errors import StoreError

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


#: ONNX TensorProto.DataType -> bytes per element (4-bit types: rounded up per pair)
_ONNX_ITEMSIZE = {
    1: 4,
    2: 1,
    3: 1,
    4: 2,
    5: 2,
    6: 4,
    7: 8,
    9: 1,
    10: 2,
    11: 8,
    12: 4,
    13: 8,
    14: 8,
    15: 16,
    16: 2,
    17: 1,
    18: 1,
    19: 1,
    20: 1,
}
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated or malformed protobuf varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf: memoryview):
    """(field number, wire type, value) of a protobuf message: ints for varints and fixed
    fields, memoryviews (no copy) for length-delimited ones."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = int.from_bytes(buf[i : i + 8], "little"), i + 8
        elif wire == 5:
            value, i = int.from_bytes(buf[i : i + 4], "little"), i + 4
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ValueError("a protobuf field runs past the end of the file")
            value, i = buf[i : i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def _tensor_problem(buf: memoryview, file_size: int) -> str | None:
    dims: list[int] = []
    dtype, raw, external, name = 1, None, False, "?"
    for field, wire, value in _fields(buf):
        if field == 1:  # dims: packed or one by one
            if wire == 2:
                j = 0
                while j < len(value):
                    d, j = _varint(value, j)
                    dims.append(d)
            else:
                dims.append(value)
        elif field == 2 and wire == 0:
            dtype = value
        elif field == 8 and wire == 2:
            name = bytes(value[:200]).decode("utf-8", "replace")
        elif field == 9 and wire == 2:
            raw = len(value)
        elif field == 13 or (field == 14 and wire == 0 and value == _EXTERNAL):
            external = True
    if external:
        return (
            f"keeps initialiser {name!r} in an external file; embedlab writes "
            "self-contained graphs only"
        )
    n = 1
    for d in dims:
        n *= d if d < 1 << 63 else 0  # a negative int64 reads as a huge varint
    itemsize = _ONNX_ITEMSIZE.get(dtype, 1)
    need = n * itemsize if dtype not in (21, 22) else (n + 1) // 2
    if raw is not None and raw != need:
        return f"initialiser {name!r} declares {dims} ({need} bytes) but stores {raw} bytes"
    if need > file_size:
        return f"initialiser {name!r} declares {dims} ({need} bytes), more than the whole file"
    return None


def _graph_problem(buf: memoryview, file_size: int, depth: int = 0) -> str | None:
    if depth > 32:
        return "nests graphs too deeply"
    for field, wire, value in _fields(buf):
        if wire != 2:
            continue
        if field == 5:  # initializer
            problem = _tensor_problem(value, file_size)
        elif field == 15:  # sparse_initializer: values, indices
            problem = next(
                (
                    p
                    for f, w, v in _fields(value)
                    if w == 2 and f in (1, 2)
                    for p in [_tensor_problem(v, file_size)]
                    if p
                ),
                None,
            )
        elif field == 1:  # node: attributes holding tensors or graphs
            problem = None
            for f, w, attr in _fields(value):
                if f != 5 or w != 2:
                    continue
                for af, aw, av in _fields(attr):
                    if aw != 2:
                        continue
                    if af in (5, 10):
                        problem = problem or _tensor_problem(av, file_size)
                    elif af in (6, 11):
                        problem = problem or _graph_problem(av, file_size, depth + 1)
        else:
            continue
        if problem:
            return problem
    return None


def check_onnx_sizes(path: str | os.PathLike, what: str) -> None:
    """Refuse an ONNX graph whose initialisers point outside the file (external data) or
    declare more elements than their stored bytes hold: a walk of the protobuf's wire
    format that copies no weights (a 60 MB graph in a few milliseconds)."""
    path = Path(path)
    try:
        data = memoryview(path.read_bytes())
        graphs = [v for f, w, v in _fields(data) if f == 7 and w == 2]
        if not graphs:
            raise ValueError("no graph in the model")
        problem = next((p for g in graphs if (p := _graph_problem(g, len(data)))), None)
    except (OSError, ValueError) as exc:
        raise StoreError(f"{what}: {path.name} is not a readable ONNX graph ({exc})") from None
    if problem:
        raise StoreError(f"{what}: {path.name} {problem}; refusing to load it")
