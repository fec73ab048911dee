"""API keys: stored as digests, compared in constant time, rotated through a file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from service.auth.keys import ApiKeys, KeysFileError, parse_keys_file, parse_keys_list


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_file_format_has_comments_and_blank_lines() -> None:
    text = "# keys for the web back end\nalpha-key\n\n  beta-key   # rotated 2024-05\n#gamma-key\n"
    assert parse_keys_file(text) == ["alpha-key", "beta-key"]
    assert parse_keys_list(" alpha-key, ,beta-key ,") == ["alpha-key", "beta-key"]


def test_identify_names_the_key_by_an_id_that_reveals_nothing() -> None:
    keys = ApiKeys(["alpha-key", "beta-key"], None, id_secret=b"s" * 32)
    alpha, beta = keys.identify("alpha-key"), keys.identify("beta-key")
    assert alpha and beta and alpha != beta
    assert keys.identify("alpha-key") == alpha  # stable
    for wrong in ("", "alpha", "alpha-key ", "ALPHA-KEY", "x" * 10_000):
        assert keys.identify(wrong) is None
    # the id is neither the key nor (a prefix of) its plain digest, so logging it is safe
    assert alpha not in hashlib.sha256(b"alpha-key").hexdigest() and "alpha" not in alpha
    # the same key under another secret (another deployment) has another id
    assert ApiKeys(["alpha-key"], None, id_secret=b"t" * 32).identify("alpha-key") != alpha


def test_only_digests_are_kept() -> None:
    keys = ApiKeys(["alpha-key"], None, id_secret=b"s" * 32)
    assert "alpha-key" not in repr(vars(keys))


def test_the_file_is_reread_when_it_changes_at_most_every_check_interval(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("old-key\n")
    clock = Clock()
    keys = ApiKeys([], path, id_secret=b"s" * 32, clock=clock, check_every_s=2)
    keys.load()
    assert keys.identify("old-key") is not None and keys.count == 1

    path.write_text("new-key\nnewer-key\n")
    os.utime(path, ns=(10**18, 10**18))  # a different mtime whatever the file system's resolution
    clock.now += 1
    assert keys.identify("old-key") is not None, "not looked at again within the interval"
    clock.now += 1.5
    assert keys.identify("old-key") is None
    assert keys.identify("new-key") is not None and keys.identify("newer-key") is not None
    assert keys.count == 2


def test_environment_keys_and_file_keys_both_count(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("file-key\n")
    keys = ApiKeys(["env-key"], path, id_secret=b"s" * 32)
    keys.load()
    assert keys.identify("env-key") and keys.identify("file-key") and keys.count == 2


def test_an_unreadable_file_keeps_the_previous_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("kept-key\n")
    clock = Clock()
    keys = ApiKeys([], path, id_secret=b"s" * 32, clock=clock, check_every_s=1)
    keys.load()
    path.unlink()
    clock.now += 5
    assert keys.identify("kept-key") is not None


def test_a_missing_file_at_start_up_is_a_configuration_error(tmp_path: Path) -> None:
    keys = ApiKeys([], tmp_path / "nope", id_secret=b"s" * 32)
    with pytest.raises(KeysFileError, match="RESERVE_API_KEYS_FILE"):
        keys.load()
