"""API keys for the service: random tokens shown once, stored as sha256 hashes in a JSON
file (written atomically), each allowed on some models with an optional rate limit."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from embedlab.core.errors import DataFormatError, ValidationError
from embedlab.store.atomic import atomic_write_bytes

__all__ = ["ApiKey", "KeyStore", "RateLimiter"]

PREFIX = "elk_"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class ApiKey:
    """One key as stored: never the token itself, only its hash."""

    id: str
    name: str
    hash: str
    models: list[str] = field(default_factory=lambda: ["*"])
    rate_per_minute: int | None = None
    created: str = ""
    revoked: bool = False
    write: bool = False  # may change models (add classes at run time)

    def allows(self, model: str) -> bool:
        return "*" in self.models or model in self.models


class KeyStore:
    """The keys file. ``create`` returns the token (the only time it exists in clear);
    ``check`` finds the live key a token belongs to."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self.keys: list[ApiKey] = []
        self._by_hash: dict[str, ApiKey] = {}
        self._refresh()

    def _refresh(self) -> None:
        """Re-read the file when it changed (size or mtime): keys created or revoked by
        another process take effect without a restart."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            keys = self._read()
            with self._lock:
                self.keys, self._stamp = keys, stamp
                self._by_hash = {k.hash: k for k in keys}

    def _read(self) -> list[ApiKey]:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            return [ApiKey(**k) for k in doc["keys"]]
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError, OSError) as exc:
            raise DataFormatError(f"{self.path}: not an embedlab keys file ({exc})") from None

    def _write(self) -> None:
        doc = {"format": "embedlab.keys", "version": 1, "keys": [asdict(k) for k in self.keys]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, json.dumps(doc, indent=1).encode("utf-8"))
        os.chmod(self.path, 0o600)
        st = self.path.stat()
        self._stamp = (st.st_mtime_ns, st.st_size)

    def create(
        self,
        name: str,
        *,
        models: list[str] | None = None,
        rate_per_minute: int | None = None,
        write: bool = False,
    ) -> tuple[ApiKey, str]:
        """A new key: (its record, the token to hand to the client — shown once); ``write``
        lets it change its models (add classes at run time)."""
        if not name.strip():
            raise ValidationError("a key needs a name (who or what uses it)")
        if rate_per_minute is not None and rate_per_minute < 1:
            raise ValidationError(f"rate_per_minute must be at least 1, got {rate_per_minute}")
        token = PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id=secrets.token_hex(4),
            name=name.strip(),
            hash=_hash(token),
            models=list(models or ["*"]),
            rate_per_minute=rate_per_minute,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            write=write,
        )
        with self._lock:
            self.keys.append(key)
            self._by_hash[key.hash] = key
            self._write()
        return key, token

    def revoke(self, key_id: str) -> ApiKey:
        with self._lock:
            for k in self.keys:
                if k.id == key_id and not k.revoked:
                    k.revoked = True
                    self._write()
                    return k
        raise ValidationError(f"no live key with id {key_id!r} in {self.path}")

    def check(self, token: str | None) -> ApiKey | None:
        """The live key of ``token``, or None."""
        if not token:
            return None
        self._refresh()
        key = self._by_hash.get(_hash(token))
        return None if key is None or key.revoked else key

    def listing(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in asdict(key).items() if k != "hash"} for key in self.keys]


class RateLimiter:
    """Token buckets per key id: ``rate`` requests a minute, bursts up to that many."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key_id: str, rate_per_minute: int | None) -> float:
        """0 when the request may go, else the seconds until it may."""
        if not rate_per_minute:
            return 0.0
        now = self._clock()
        per_s = rate_per_minute / 60.0
        with self._lock:
            tokens, at = self._buckets.get(key_id, (float(rate_per_minute), now))
            tokens = min(float(rate_per_minute), tokens + (now - at) * per_s)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / per_s
