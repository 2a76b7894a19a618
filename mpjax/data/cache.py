"""Download, checksum and atomic caching of data files (host side).

Every file is fetched with `urllib` (so `file://` URLs go through the same code as
`https://` ones), hashed with SHA-256 while it streams into a temporary file in the
cache folder, and renamed into place with `os.replace` only when the hash matches the
pinned value. A failed, interrupted or corrupt download therefore never leaves a file
under its final name, and the temporary file is always removed.

Parsed arrays are cached as `.npz`, also written atomically; `load_npz` reads every
member eagerly (so zip CRC errors surface) and returns `None` with a warning for a
corrupt file, which the caller then rebuilds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import sys
import tempfile
import urllib.request
import warnings
from collections.abc import Mapping

import numpy as np

__all__ = [
    "CACHE_ENV",
    "ChecksumError",
    "DEFAULT_CACHE_DIR",
    "RemoteFile",
    "fetch",
    "load_npz",
    "resolve_cache_dir",
    "save_npz",
    "sha256_file",
]

DEFAULT_CACHE_DIR = pathlib.Path("~/.cache/memory_pair_data")
CACHE_ENV = "MPJAX_DATA_DIR"
_CHUNK = 1 << 20


class ChecksumError(RuntimeError):
    """A downloaded or cached file does not have its pinned SHA-256."""


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One canonical data file.

    Attributes:
      filename: name of the file in the cache folder and at the end of its URL.
      sha256: pinned SHA-256 hex digest of the file.
      size: size in bytes (for the progress bar), or None.
    """

    filename: str
    sha256: str
    size: int | None = None


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The cache folder: `cache_dir`, else `$MPJAX_DATA_DIR`, else the default.

    Args:
      cache_dir: explicit folder, or None.

    Returns:
      The absolute folder path (not created).
    """
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return pathlib.Path(cache_dir).expanduser().resolve()


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _open_url(url: str, timeout: float):
    """Opens `url` for reading (the seam tests use to simulate interruptions)."""
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (file:// is intended)


def _progress(total: int | None, desc: str, enabled: bool):
    from tqdm.auto import tqdm  # imported lazily: only downloads need it

    return tqdm(
        total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
        file=sys.stderr, disable=not enabled, leave=False,
    )


def _download(url: str, dest: pathlib.Path, remote: RemoteFile, sha256: str,
              timeout: float, progress: bool) -> None:
    """Streams `url` into a temp file next to `dest`, verifies, then renames."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = pathlib.Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, _open_url(url, timeout) as resp:
            length = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
            total = int(length) if length else remote.size
            with _progress(total, remote.filename, progress) as bar:
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        actual = h.hexdigest()
        if actual != sha256:
            raise ChecksumError(
                f"SHA-256 mismatch for {remote.filename} downloaded from {url}: "
                f"expected {sha256}, got {actual}. The file was discarded; nothing was cached."
            )
        os.replace(tmp, dest)
    finally:
        # Any failure (checksum, network, KeyboardInterrupt) leaves no partial file.
        tmp.unlink(missing_ok=True)


def fetch(remote: RemoteFile, base_url: str, cache_dir: pathlib.Path, *,
          sha256: str | None = None, timeout: float = 60.0, progress: bool = True) -> pathlib.Path:
    """Returns the verified cached copy of `remote`, downloading it if needed.

    A cached copy whose hash does not match is discarded (with a warning) and fetched
    again.

    Args:
      remote: the file to fetch.
      base_url: folder URL; the file's URL is `base_url/remote.filename`.
      cache_dir: cache folder (created if missing).
      sha256: expected digest overriding `remote.sha256` (tests pin fixtures this way).
      timeout: socket timeout in seconds for connecting and for each read.
      progress: show a tqdm progress bar on stderr.

    Returns:
      Path of the verified file in `cache_dir`.

    Raises:
      ChecksumError: the downloaded bytes do not have the expected SHA-256.
      OSError: the download failed (e.g. `urllib.error.URLError` without network).
    """
    expected = (sha256 or remote.sha256).lower()
    cache_dir.mkdir(parents=True, exist_ok=True)
    dest = cache_dir / remote.filename
    if dest.exists():
        actual = sha256_file(dest)
        if actual == expected:
            return dest
        warnings.warn(
            f"cached {dest} has SHA-256 {actual}, expected {expected}; downloading it again",
            stacklevel=2,
        )
        dest.unlink()
    url = base_url.rstrip("/") + "/" + remote.filename
    _download(url, dest, remote, expected, timeout, progress)
    return dest


def save_npz(path: pathlib.Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Writes `arrays` to `path` atomically (temp file in the same folder + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    tmp = pathlib.Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_npz(path: pathlib.Path, required: tuple[str, ...],
             meta: Mapping[str, str] = ()) -> dict[str, np.ndarray] | None:
    """Loads a cache `.npz` eagerly, or returns None if it is missing or unusable.

    A file that cannot be read (truncated, bad CRC, missing members) or whose string
    metadata differs from `meta` (e.g. built from other source hashes) is reported with
    a warning, deleted, and None is returned so the caller rebuilds it. A corrupt cache
    is never silently used.

    Args:
      path: the `.npz` file.
      required: array names that must be present.
      meta: expected values of string members (e.g. `{"sha256": "..."}`).

    Returns:
      A dict of arrays, or None.
    """
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}  # reads every member: CRC is checked
        missing = [k for k in (*required, *dict(meta)) if k not in arrays]
        if missing:
            raise ValueError(f"missing members {missing}")
        for k, v in dict(meta).items():
            if str(arrays[k]) != v:
                raise ValueError(f"member {k!r} is {str(arrays[k])!r}, expected {v!r}")
    except Exception as e:  # noqa: BLE001 (any failure means: rebuild)
        warnings.warn(f"cache file {path} is corrupt or stale ({type(e).__name__}: {e}); "
                      "rebuilding it", stacklevel=2)
        path.unlink(missing_ok=True)
        return None
    return arrays
