"""The IDX file format of MNIST and Fashion-MNIST: read one file, check it, return its array.

An IDX file is a big-endian header followed by the values, row-major:
- images (`*-images-idx3-ubyte`): magic 0x00000803, then count, rows and cols as uint32, then
  count * rows * cols uint8 pixels (0 is background);
- labels (`*-labels-idx1-ubyte`): magic 0x00000801, then count as uint32, then count uint8 labels.
In the magic, 0x08 says the values are unsigned bytes and the last byte is the number of
dimensions. A file whose name ends in `.gz` is decompressed in memory first.

Every check (the magic, the length the header promises, a complete gzip stream) fails with one
`DataError` whose single line names the file, so a bad copy is reported before anything compiles.
"""

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from preact.data.errors import DataError, DataNotFoundError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_KIND = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}


def read_images(path: Path) -> np.ndarray:
    """The uint8 images [count, rows, cols] of an IDX images file (raw or .gz)."""
    blob = _read(path)
    count, rows, cols = _dims(blob, path, IMAGES_MAGIC)
    return np.frombuffer(blob, np.uint8, offset=16).reshape(count, rows, cols)


def read_labels(path: Path) -> np.ndarray:
    """The uint8 labels [count] of an IDX labels file (raw or .gz)."""
    blob = _read(path)
    (count,) = _dims(blob, path, LABELS_MAGIC)
    return np.frombuffer(blob, np.uint8, offset=8)


def _read(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError as e:
        raise DataNotFoundError(f"{path} does not exist") from e
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        what = "a complete gzip file" if path.name.endswith(".gz") else "readable"
        raise DataError(f"{path} is not {what} ({type(e).__name__}: {_one_line(e)})") from e


def _dims(blob: bytes, path: Path, magic: int) -> tuple[int, ...]:
    """The header's sizes, after checking the magic and that the data has exactly that size."""
    kind = _KIND[magic]
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(blob) < header:
        raise DataError(
            f"{path} has {len(blob)} bytes, fewer than the {header}-byte header of an IDX {kind} "
            "file: it is truncated or not an IDX file"
        )
    found, *dims = struct.unpack(f">{1 + ndim}I", blob[:header])
    if found != magic:
        other = f" (the magic of an IDX {_KIND[found]} file)" if found in _KIND else ""
        raise DataError(
            f"{path} starts with magic 0x{found:08x}{other}, expected 0x{magic:08x} for an IDX "
            f"{kind} file"
        )
    expected = header + math.prod(dims)
    if len(blob) != expected:
        shape = " x ".join(str(d) for d in dims)
        raise DataError(
            f"{path} has {len(blob)} bytes, but its header ({shape} {kind}) says {expected}: "
            "the file is truncated or corrupt"
        )
    return tuple(dims)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
