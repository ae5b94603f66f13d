"""Pseudonymisation of participant identifiers (layer 3: edges; reads configuration).

Participant identifiers are personal data.  Validation replaces each one by a keyed hash,
HMAC-SHA256 under a secret key, before anything leaves it: the same identifier under the
same key always gives the same pseudonym (so submissions can be compared), and without the
key a pseudonym cannot be traced back or recomputed from a guessed identifier.

The key is configuration, never part of the repository:

1. the environment variable ``SIB_PSEUDONYM_KEY`` (at least 16 characters), else
2. the file named by ``SIB_PSEUDONYM_KEY_FILE``, else
3. the file ``~/.config/sib-engine/pseudonym.key``.

With none of these, :meth:`PseudonymKey.from_environment` raises
:class:`PseudonymKeyError` saying how to set one.  The examples and tests use
:meth:`PseudonymKey.demo`, a public key for made-up data only: its pseudonyms start with
``demo-`` so that they can never pass for the output of a real key.

>>> key = PseudonymKey.demo()
>>> key.pseudonyms(["P0001", "P0002", "P0001"])
['demo-1981873d547aae5db1f1', 'demo-828d231c0d19d8a91ddb', 'demo-1981873d547aae5db1f1']
"""

from __future__ import annotations

import hashlib
import hmac
import os
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from sib_engine.errors import SibError

ENV_KEY = "SIB_PSEUDONYM_KEY"
ENV_KEY_FILE = "SIB_PSEUDONYM_KEY_FILE"
DEFAULT_KEY_FILE = Path("~/.config/sib-engine/pseudonym.key")
MIN_KEY_LENGTH = 16
HEX_CHARS = 20
"""Hex characters kept of each HMAC (80 bits: no collision among billions of people)."""

_DEMO_SECRET = b"sib-engine public demo key - NOT for real participant data"
_HEX_PAIRS = np.array([ord(f"{b:02x}"[0]) | ord(f"{b:02x}"[1]) << 8 for b in range(256)], dtype="<u2")
"""Byte value -> its two lower-case hex digits, as the bytes of a little-endian uint16."""
_CHUNK = 8192


class PseudonymKeyError(SibError):
    """No usable pseudonymisation key is configured."""


class PseudonymKey:
    """A secret key for pseudonymising identifiers.  Its text is never shown."""

    __slots__ = ("_secret", "prefix", "origin")

    def __init__(self, secret: bytes, *, prefix: str = "ps-", origin: str = "given") -> None:
        if len(secret) < MIN_KEY_LENGTH:
            raise PseudonymKeyError(
                f"the pseudonymisation key is {len(secret)} bytes; use at least {MIN_KEY_LENGTH}"
                " (e.g. the output of: python -c 'import secrets; print(secrets.token_hex(32))')"
            )
        self._secret = secret
        self.prefix = prefix
        self.origin = origin

    def __repr__(self) -> str:
        return f"PseudonymKey(id={self.id!r}, origin={self.origin!r})"

    @classmethod
    def demo(cls) -> "PseudonymKey":
        """The public demo key: for examples and tests with made-up data, never real data."""
        return cls(_DEMO_SECRET, prefix="demo-", origin="demo")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "PseudonymKey":
        """The key from ``SIB_PSEUDONYM_KEY``, ``SIB_PSEUDONYM_KEY_FILE`` or
        ``~/.config/sib-engine/pseudonym.key``; :class:`PseudonymKeyError` if none is set."""
        env = os.environ if environ is None else environ
        text = env.get(ENV_KEY)
        if text:
            return cls(text.strip().encode("utf-8"), origin=f"${ENV_KEY}")
        named = env.get(ENV_KEY_FILE)
        path = Path(named).expanduser() if named else DEFAULT_KEY_FILE.expanduser()
        if named or path.is_file():
            try:
                secret = path.read_bytes().strip()
            except OSError as exc:
                raise PseudonymKeyError(
                    f"cannot read the pseudonymisation key file {path}: {exc.strerror}"
                ) from None
            return cls(secret, origin=str(path))
        raise PseudonymKeyError(
            "no pseudonymisation key is configured: participant identifiers must be"
            f" pseudonymised with a secret key. Set {ENV_KEY} (at least {MIN_KEY_LENGTH}"
            f" characters), or put the key in a file named by {ENV_KEY_FILE} or in"
            f" {DEFAULT_KEY_FILE}. Keep it out of the repository. For made-up example data"
            " only, use the public demo key (PseudonymKey.demo())."
        )

    @property
    def id(self) -> str:
        """A fingerprint of the key (safe to publish), to tell which key made a pseudonym."""
        return hmac.new(self._secret, b"sib-engine key id", hashlib.sha256).hexdigest()[:12]

    def _states(self) -> tuple[Any, Any]:
        """HMAC (RFC 2104) hashes the key, padded to SHA-256's 64-byte block and masked with
        ipad/opad, ahead of the message (inner) and of the inner digest (outer): those two
        SHA-256 states are the same for every identifier, so they are computed once per
        call and copied per identifier.  The result is exactly hmac.new(secret, id, sha256)."""
        block = 64
        padded = hashlib.sha256(self._secret).digest() if len(self._secret) > block else self._secret
        padded = padded.ljust(block, b"\0")
        return hashlib.sha256(bytes(b ^ 0x36 for b in padded)), hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def digests(self, identifiers: Iterable[bytes]) -> list[bytes]:
        """HMAC-SHA256 under the key of each identifier (its UTF-8 bytes), in order."""
        inner, outer = self._states()
        icopy, ocopy = inner.copy, outer.copy
        digests: list[bytes] = []
        append = digests.append
        for ident in identifiers:
            h = icopy()
            h.update(ident)
            o = ocopy()
            o.update(h.digest())
            append(o.digest())
        return digests

    def pseudonyms(self, identifiers: Iterable[str]) -> list[str]:
        """The pseudonym of each identifier, in order."""
        digests = self.digests(ident.encode("utf-8") for ident in identifiers)
        if not digests:
            return []
        text = b"".join(digests).hex()
        step, keep, prefix = 64, HEX_CHARS, self.prefix
        return [prefix + text[i : i + keep] for i in range(0, len(text), step)]

    def pseudonym_array(self, identifiers: Iterable[bytes | memoryview], *, distinct: bool = False) -> np.ndarray:
        """The pseudonyms of identifiers given as UTF-8 bytes, as a numpy array of
        fixed-width bytes (dtype ``S``): the UTF-8 text of :meth:`pseudonyms`, made without
        a Python object per identifier, for hundreds of thousands at once.

        With ``distinct`` (the caller knows the identifiers differ), two of them getting
        the same pseudonym raises ``ValueError`` (80 bits: never seen, but never silent).
        """
        prefix = np.frombuffer(self.prefix.encode("utf-8"), dtype=np.uint8)
        p, nbytes = prefix.size, (HEX_CHARS + 1) // 2
        inner, outer = self._states()
        icopy, ocopy = inner.copy, outer.copy
        parts: list[np.ndarray] = []
        heads: list[np.ndarray] = []
        it = iter(identifiers)
        while True:
            # a chunk at a time: the digests of a chunk are joined and converted at once
            digests: list[bytes] = []
            append = digests.append
            for ident in islice(it, _CHUNK):
                h = icopy()
                h.update(ident)
                o = ocopy()
                o.update(h.digest())
                append(o.digest())
            if not digests:
                break
            raw = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), 32)
            part = np.empty((len(digests), p + HEX_CHARS), dtype=np.uint8)
            part[:, :p] = prefix
            part[:, p:] = _HEX_PAIRS[raw[:, :nbytes]].view(np.uint8)[:, :HEX_CHARS]
            parts.append(part)
            if distinct:
                heads.append(np.ascontiguousarray(raw[:, :8]).view(np.uint64).reshape(len(digests)))
            if len(digests) < _CHUNK:
                break
        out = np.concatenate(parts) if parts else np.empty((0, p + HEX_CHARS), dtype=np.uint8)
        result = out.view(f"S{p + HEX_CHARS}").reshape(out.shape[0])
        if distinct and heads:
            head = np.sort(np.concatenate(heads))
            # distinct leading 64 bits prove the pseudonyms distinct; else compare them whole
            if bool((head[1:] == head[:-1]).any()) and len(set(result.tolist())) != result.size:
                raise ValueError("two different identifiers have the same pseudonym; report this as a bug")
        return result
