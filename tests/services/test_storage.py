"""Tests for the content-addressed attachment storage in ``backend.services.storage``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from backend.services import storage as storage_module
from backend.services.storage import LocalStorage, Storage, key_for, storage_from_env

DATA = b"\xff\xd8\xff evidence photo bytes"
SHA = hashlib.sha256(DATA).hexdigest()


def test_put_open_exists(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    key = f"{SHA[:2]}/{SHA[2:4]}/{SHA}"
    assert not store.exists(key)
    assert store.put(DATA, SHA) == key == key_for(SHA)
    assert store.exists(key)
    assert (tmp_path / SHA[:2] / SHA[2:4] / SHA).read_bytes() == DATA
    with store.open(key) as stored:
        assert stored.read() == DATA


def test_put_is_idempotent_and_never_rewrites(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    key = store.put(DATA, SHA)
    path = store.path(key)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    inode = path.stat().st_ino
    assert store.put(DATA, SHA) == key
    assert path.stat().st_ino == inode
    assert path.stat().st_mtime_ns == 1_000_000_000
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [SHA]


def test_different_content_different_keys(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    other = DATA + b"!"
    keys = {store.put(d, hashlib.sha256(d).hexdigest()) for d in (DATA, other, b"")}
    assert len(keys) == 3
    assert all(store.exists(k) for k in keys)


def test_no_temporary_files_are_left(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    store.put(DATA, SHA)
    assert [p.name for p in store.path(key_for(SHA)).parent.iterdir()] == [SHA]


def test_failed_write_removes_its_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(storage_module.os, "replace", fail)
    store = LocalStorage(tmp_path)
    with pytest.raises(OSError, match="disk full"):
        store.put(DATA, SHA)
    assert not store.exists(key_for(SHA))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_hash_must_match_the_data(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    with pytest.raises(ValueError, match="does not have the given SHA-256"):
        store.put(DATA, hashlib.sha256(b"something else").hexdigest())
    with pytest.raises(ValueError, match="not a lower-case hex SHA-256"):
        store.put(DATA, SHA.upper())
    with pytest.raises(ValueError, match="not a lower-case hex SHA-256"):
        store.put(DATA, "../../etc/passwd")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "key",
    [
        "",
        SHA,
        f"{SHA[:2]}/{SHA}",
        f"{SHA[:2]}/{SHA[2:4]}/{SHA}/",
        f"/{SHA[:2]}/{SHA[2:4]}/{SHA}",
        f"{SHA[:2]}/{SHA[2:4]}/{SHA.upper()}",
        f"00/00/{SHA}",  # directories that do not match the hash
        f"{SHA[:2]}\\{SHA[2:4]}\\{SHA}",
        f"../{SHA[2:4]}/{SHA}",
        "../../../../etc/passwd",
        f"{SHA[:2]}/{SHA[2:4]}/{SHA}\n",
    ],
)
def test_bad_keys_are_rejected(tmp_path: Path, key: str) -> None:
    store = LocalStorage(tmp_path)
    store.put(DATA, SHA)
    for operation in (store.exists, store.open, store.path):
        with pytest.raises(ValueError, match="not a storage key"):
            operation(key)


def test_open_missing_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        LocalStorage(tmp_path).open(key_for(SHA))


def test_storage_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDPATROL_STORAGE_ROOT", str(tmp_path / "attachments"))
    store: Storage = storage_from_env()
    key = store.put(DATA, SHA)
    assert (tmp_path / "attachments" / key).read_bytes() == DATA

    monkeypatch.delenv("GRIDPATROL_STORAGE_ROOT")
    monkeypatch.chdir(tmp_path)
    default = storage_from_env()
    assert isinstance(default, LocalStorage)
    assert default.root == tmp_path / ".local" / "attachments"
    monkeypatch.chdir("/")
    assert default.put(DATA, SHA) == key  # the root was fixed when it was made
    assert (tmp_path / ".local" / "attachments" / key).is_file()
