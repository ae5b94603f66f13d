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
from pathlib import Path
from typing import Iterable, Mapping

from sib_engine.errors import SibError

ENV_KEY = "SIB_PSEUDONYM_KEY"
ENV_KEY_FILE = "SIB_PSEUDONYM_KEY_FILE"
DEFAULT_KEY_FILE = Path("~/.config/sib-engine/pseudonym.key")
MIN_KEY_LENGTH = 16
HEX_CHARS = 20
"""Hex characters kept of each HMAC (80 bits: no collision among billions of people)."""

_DEMO_SECRET = b"sib-engine public demo key - NOT for real participant data"


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

    def pseudonyms(self, identifiers: Iterable[str]) -> list[str]:
        """The pseudonym of each identifier, in order."""
        block = 64
        key = self._secret
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        key = key.ljust(block, b"\0")
        inner0 = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        outer0 = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        icopy, ocopy = inner0.copy, outer0.copy
        digests: list[bytes] = []
        append = digests.append
        for ident in identifiers:
            h = icopy()
            h.update(ident.encode("utf-8"))
            o = ocopy()
            o.update(h.digest())
            append(o.digest())
        if not digests:
            return []
        text = b"".join(digests).hex()
        step, keep, prefix = 64, HEX_CHARS, self.prefix
        return [prefix + text[i : i + keep] for i in range(0, len(text), step)]
