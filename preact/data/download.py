"""Fetching an official archive: stream to a hidden temporary file, check its md5, rename.

Only a complete download whose checksum matches the published one ever appears under the final
name (`os.replace` is atomic within a directory), so an interrupted or corrupted transfer cannot be
mistaken for the dataset later. `urlopen` is looked up at call time so tests can replace it and
never touch the network.

Progress goes to stderr, whatever the logging level (train.py shows warnings only, and a download
of CIFAR takes a while): a line when a download starts, one every `_REPORT_EVERY_S` seconds while
it runs, and one when it is complete and verified.
"""

import hashlib
import os
import sys
import tempfile
import time
import urllib.error
from collections.abc import Sequence
from pathlib import Path
from urllib.request import urlopen

from preact.data.errors import DataError, DataNotFoundError

_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60
_REPORT_EVERY_S = 10.0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _mb(num_bytes: float) -> str:
    return f"{num_bytes / 1e6:.1f} MB"


def _content_length(response) -> int | None:
    headers = getattr(response, "headers", None)
    try:
        return int(headers.get("Content-Length")) if headers is not None else None
    except (TypeError, ValueError):
        return None


def file_md5(path: Path) -> str:
    """The hex md5 digest of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify_md5(path: Path, expected: str) -> None:
    """Raises DataError unless `path` has the published md5 `expected`."""
    actual = file_md5(path)
    if actual != expected:
        raise DataError(
            f"{path} has md5 {actual}, but the published checksum of {path.name} is {expected}: "
            "the file is truncated, corrupt or not the official archive. Delete it and download "
            "it again."
        )


def download(urls: Sequence[str], dest: Path, md5: str) -> Path:
    """Downloads the first of `urls` that answers with the right md5 to `dest`.

    Raises DataError if a server sends a file with the wrong checksum and no other URL works, and
    DataNotFoundError if no URL can be reached (offline).
    """
    failures = []
    checksum_failure = False
    for url in urls:
        _say(f"downloading {url} to {dest} ...")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(
                dir=dest.parent, prefix=f".{dest.name}.", suffix=".part"
            )
        except OSError as e:
            raise DataError(
                f"Cannot write the download of {dest.name} into {dest.parent}: {e}"
            ) from e
        tmp = Path(tmp_name)
        try:
            digest = hashlib.md5()
            start = last_report = time.monotonic()
            received = 0
            with os.fdopen(fd, "wb") as out, urlopen(url, timeout=_TIMEOUT_S) as response:
                total = _content_length(response)
                while chunk := response.read(_CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
                    now = time.monotonic()
                    if now - last_report >= _REPORT_EVERY_S:
                        last_report = now
                        of = f" of {_mb(total)} ({100 * received / total:.0f}%)" if total else ""
                        rate = received / max(now - start, 1e-9)
                        _say(f"  {dest.name}: {_mb(received)}{of} in {now - start:.0f} s, "
                             f"{_mb(rate)}/s")  # fmt: skip
            if digest.hexdigest() != md5:
                checksum_failure = True
                failures.append(f"{url} sent a file with md5 {digest.hexdigest()}, expected {md5}")
                _say(f"  {url} sent a file with the wrong md5")
                continue
            os.replace(tmp, dest)
            _say(f"downloaded {dest.name}: {_mb(received)} in {time.monotonic() - start:.1f} s, "
                 "md5 verified")  # fmt: skip
            return dest
        except (OSError, urllib.error.URLError) as e:
            failures.append(f"{url}: {e}")
            _say(f"  {url} failed: {e}")
        finally:
            tmp.unlink(missing_ok=True)
    reasons = "; ".join(failures)
    if checksum_failure:
        raise DataError(f"Could not download {dest.name} with the published md5 {md5}: {reasons}")
    raise DataNotFoundError(f"{dest.name} could not be downloaded ({reasons})")
