"""Optional signatures of model bundles: HMAC-SHA256 with a secret key over the exact bytes
of a bundle's ``bundle.json`` (which lists the checksum of every other file the bundle holds:
the arrays, the ONNX graph, the encoder's fingerprint), kept in the bundle's
``signature.json``. A server started with ``--require-signature KEYFILE`` loads only bundles
signed with that key; unsigned bundles keep working everywhere else.

A key file is JSON ``{"format": "embedlab.signing_key", "key_id", "secret"}`` written with
mode 0600; the key id (a hash of the secret) names the key in signatures and messages
without revealing it. Signing an existing bundle is :func:`embedlab.store.bundle.sign_bundle`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedlab.core.errors import RefusedOverwrite, StoreError

__all__ = [
    "SigningKey",
    "create_key",
    "load_key",
    "sign_document",
    "verify_signature",
]

KEY_FORMAT = "embedlab.signing_key"
SIGNATURE_FORMAT = "embedlab.signature"
ALGORITHM = "hmac-sha256"


@dataclass(frozen=True)
class SigningKey:
    """A secret signing key and its public id."""

    key_id: str
    secret: bytes

    def __repr__(self) -> str:  # never print the secret
        return f"SigningKey(key_id={self.key_id!r})"

    def mac(self, data: bytes) -> str:
        return hmac.new(self.secret, data, hashlib.sha256).hexdigest()


def _key_id(secret: bytes) -> str:
    return hashlib.sha256(b"embedlab-key-id\0" + secret).hexdigest()[:16]


def create_key(path: str | os.PathLike, *, force: bool = False) -> SigningKey:
    """Write a new random 256-bit key to ``path`` (mode 0600) and return it."""
    path = Path(path)
    if path.exists() and not force:
        raise RefusedOverwrite(f"{path} already exists; pass --force to replace the key")
    secret = secrets.token_bytes(32)
    key = SigningKey(_key_id(secret), secret)
    doc = {"format": KEY_FORMAT, "format_version": 1, "key_id": key.key_id, "secret": secret.hex()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return key


def load_key(path: str | os.PathLike) -> SigningKey:
    """The key in ``path``; StoreError naming the file when it is not a readable key."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != KEY_FORMAT:
            raise ValueError(f"format is not {KEY_FORMAT!r}")
        secret = bytes.fromhex(doc["secret"])
        if len(secret) < 16:
            raise ValueError("the secret is shorter than 128 bits")
    except FileNotFoundError:
        raise StoreError(
            f"no signing key at {path} (make one with `embedlab keys sign-key create`)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise StoreError(f"{path} is not an embedlab signing key ({exc})") from None
    key = SigningKey(_key_id(secret), secret)
    if doc.get("key_id") not in (None, key.key_id):
        raise StoreError(f"{path}: its key_id does not match its secret (edited key file)")
    return key


def sign_document(key: SigningKey, data: bytes, signed: str) -> bytes:
    """The signature.json bytes for the document ``signed`` whose bytes are ``data``."""
    doc = {
        "format": SIGNATURE_FORMAT,
        "format_version": 1,
        "algorithm": ALGORITHM,
        "key_id": key.key_id,
        "signed": signed,
        "mac": key.mac(data),
    }
    return json.dumps(doc, indent=1).encode("utf-8")


def _signature(raw: bytes | None, where: Path) -> dict[str, Any]:
    if raw is None:
        raise StoreError(
            f"{where} is not signed, and this server requires signed bundles (sign it with "
            "`embedlab fit ... --sign KEYFILE` or `embedlab keys sign BUNDLE --key KEYFILE`)"
        )
    try:
        doc = json.loads(raw.decode("utf-8"))
        if doc.get("format") != SIGNATURE_FORMAT or doc.get("algorithm") != ALGORITHM:
            raise ValueError("not an embedlab HMAC-SHA256 signature")
        str(doc["key_id"]), str(doc["mac"])
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise StoreError(f"{where}: its signature cannot be read ({exc})") from None
    return doc


def verify_signature(key: SigningKey, data: bytes, signature: bytes | None, where: Path) -> None:
    """StoreError unless ``signature`` (signature.json's bytes, None when absent) is
    ``key``'s signature of ``data``."""
    doc = _signature(signature, where)
    if doc["key_id"] != key.key_id:
        raise StoreError(
            f"{where} is signed with another key (key id {doc['key_id']}, expected "
            f"{key.key_id}); refusing it"
        )
    if not hmac.compare_digest(str(doc["mac"]), key.mac(data)):
        raise StoreError(
            f"{where}: the signature does not match: the bundle was changed after it was "
            "signed; refusing it"
        )
