"""API keys: kept only as SHA-256 digests, compared in constant time, rotatable through a file.

Keys come from ``RESERVE_API_KEYS`` (comma-separated) and ``RESERVE_API_KEYS_FILE`` (one
per line, ``#`` starts a comment). The file is re-read when its mtime, size or inode
changes, looked at no more often than every ``check_every_s``, so keys rotate without a
restart. A key is known to the rest of the gateway only by its *key id*: an HMAC of its
digest, safe to log and to put in a token (it reveals nothing that helps guess the key).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger("reserve.auth")

RELOAD_CHECK_S = 2.0
KEY_ID_CHARS = 12
MAX_KEY_CHARS = 512


class KeysFileError(Exception):
    """The keys file cannot be read (at start-up this stops the service)."""


def parse_keys_file(text: str) -> list[str]:
    """One key per line; blank lines and everything after ``#`` are ignored."""
    keys = []
    for line in text.splitlines():
        key = line.split("#", 1)[0].strip()
        if key:
            keys.append(key)
    return keys


def parse_keys_list(text: str) -> list[str]:
    return [key.strip() for key in text.split(",") if key.strip()]


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    """The configured keys as (digest, key id) pairs; ``identify`` says which key was presented."""

    def __init__(
        self,
        env_keys: Iterable[str],
        path: Path | None,
        *,
        id_secret: bytes,
        clock: Callable[[], float] = time.monotonic,
        check_every_s: float = RELOAD_CHECK_S,
    ) -> None:
        self._id_secret = id_secret
        self._env = [self._entry(key) for key in env_keys]
        self._path = path
        self._file: list[tuple[bytes, str]] = []
        self._signature: tuple[int, int, int] | None = None
        self._clock = clock
        self._check_every_s = check_every_s
        self._checked_at = clock()

    def load(self) -> None:
        """Read the keys file now; an unreadable file here is a configuration error."""
        if self._path is None:
            return
        try:
            self._read()
        except OSError as exc:
            raise KeysFileError(f"RESERVE_API_KEYS_FILE={self._path}: cannot read it ({exc.strerror})") from None
        self._checked_at = self._clock()

    @property
    def count(self) -> int:
        return len(self._env) + len(self._file)

    def identify(self, presented: str) -> str | None:
        """The key id of ``presented`` if it is a configured key, else None. Every stored
        digest is compared (no early exit), each in constant time."""
        self._maybe_reload()
        if not presented or len(presented) > MAX_KEY_CHARS:
            return None
        wanted = digest(presented)
        found: str | None = None
        for stored, key_id in (*self._env, *self._file):
            if hmac.compare_digest(stored, wanted):
                found = key_id
        return found

    def _entry(self, key: str) -> tuple[bytes, str]:
        key_digest = digest(key)
        key_id = hmac.new(self._id_secret, b"key-id:" + key_digest, hashlib.sha256).hexdigest()[:KEY_ID_CHARS]
        return key_digest, key_id

    def _maybe_reload(self) -> None:
        if self._path is None:
            return
        now = self._clock()
        if now - self._checked_at < self._check_every_s:
            return
        self._checked_at = now
        try:
            stat = os.stat(self._path)
            if (stat.st_mtime_ns, stat.st_size, stat.st_ino) != self._signature:
                before = len(self._file)
                self._read()
                log.info("API keys file re-read: %d keys (was %d)", len(self._file), before)
        except OSError as exc:  # e.g. mid-replacement: keep the keys we have rather than lock everyone out
            log.warning("API keys file %s unreadable (%s); keeping the previous keys", self._path, exc.strerror)

    def _read(self) -> None:
        assert self._path is not None
        stat = os.stat(self._path)
        text = self._path.read_text(encoding="utf-8")
        self._file = [self._entry(key) for key in parse_keys_file(text)]
        self._signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
