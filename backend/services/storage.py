"""Content-addressed storage for attachment bytes.

A key is ``ab/cd/<sha256>``: the lower-case hex SHA-256 of the content, below two directories
named after its first two byte pairs.  The same content always gets the same key, so ``put`` is
idempotent and never rewrites.  ``LocalStorage`` keeps the files on disk; an S3-compatible store
can implement the same ``Storage`` protocol later (the key doubles as the object name).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

__all__ = ["DEFAULT_ROOT", "LocalStorage", "Storage", "key_for", "storage_from_env"]

#: Where ``storage_from_env`` puts files when GRIDPATROL_STORAGE_ROOT is not set.
DEFAULT_ROOT = ".local/attachments"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_KEY = re.compile(r"([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})")


class Storage(Protocol):
    """Where attachment bytes live."""

    def put(self, data: bytes, sha256: str) -> str:
        """Store ``data`` (whose hex SHA-256 is ``sha256``) and return its key."""
        ...

    def open(self, key: str) -> BinaryIO:
        """The stored bytes for ``key``, to read; FileNotFoundError if there are none."""
        ...

    def exists(self, key: str) -> bool:
        """Whether something is stored under ``key``."""
        ...


def key_for(sha256: str) -> str:
    """The key of content with this hex SHA-256; ValueError if it is not one."""
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"not a lower-case hex SHA-256: {sha256!r}")
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


def _check_key(key: str) -> str:
    match = _KEY.fullmatch(key)
    if not match or match[3][:2] != match[1] or match[3][2:4] != match[2]:
        raise ValueError(f"not a storage key (ab/cd/<sha256>): {key!r}")
    return key


class LocalStorage:
    """Files under ``root``, written atomically (temporary file, fsync, rename)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """The file for a (validated) key."""
        return self.root / _check_key(key)

    def put(self, data: bytes, sha256: str) -> str:
        """Store ``data`` unless it is there already; ValueError if ``sha256`` does not match."""
        key = key_for(sha256)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError("the data does not have the given SHA-256")
        target = self.path(key)
        if target.is_file():
            return key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)  # a concurrent put of the same content writes the same bytes
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        _fsync_directory(target.parent)
        return key

    def open(self, key: str) -> BinaryIO:
        return self.path(key).open("rb")

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def storage_from_env() -> Storage:
    """``LocalStorage`` at GRIDPATROL_STORAGE_ROOT (default ``.local/attachments``, relative to
    the current directory when this is called)."""
    root = os.environ.get("GRIDPATROL_STORAGE_ROOT") or DEFAULT_ROOT
    return LocalStorage(Path(root).absolute())
