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
import subprocess
import sys
from itertools import islice
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Mapping

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

    def _pads(self) -> tuple[bytes, bytes]:
        """HMAC (RFC 2104) hashes the key, padded to SHA-256's 64-byte block and masked with
        ipad/opad, ahead of the message (inner) and of the inner digest (outer)."""
        block = 64
        padded = hashlib.sha256(self._secret).digest() if len(self._secret) > block else self._secret
        padded = padded.ljust(block, b"\0")
        return bytes(b ^ 0x36 for b in padded), bytes(b ^ 0x5C for b in padded)

    def _states(self) -> tuple[Any, Any]:
        """The SHA-256 states after the inner and outer pads (:meth:`_pads`): the same for
        every identifier, so they are computed once per call and copied per identifier.
        The result is exactly hmac.new(secret, id, sha256)."""
        ipad, opad = self._pads()
        return hashlib.sha256(ipad), hashlib.sha256(opad)

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

    def _digest_chunks(self, identifiers: Iterable[bytes | memoryview]) -> Iterator[bytes]:
        """HMAC-SHA256 digests (32 bytes each) of ``identifiers``, joined a chunk at a time."""
        inner, outer = self._states()
        return _hmac_chunks(inner, outer, identifiers)

    def _names(self, raw: np.ndarray, *, distinct: bool) -> np.ndarray:
        """The pseudonyms of HMAC digests ``raw`` (an ``(m, 32)`` array of bytes), as
        fixed-width bytes (dtype ``S``); see :meth:`pseudonym_array`."""
        prefix = np.frombuffer(self.prefix.encode("utf-8"), dtype=np.uint8)
        p, nbytes = prefix.size, (HEX_CHARS + 1) // 2
        out = np.empty((raw.shape[0], p + HEX_CHARS), dtype=np.uint8)
        out[:, :p] = prefix
        out[:, p:] = _HEX_PAIRS[raw[:, :nbytes]].view(np.uint8)[:, :HEX_CHARS]
        result = out.view(f"S{p + HEX_CHARS}").reshape(out.shape[0])
        if distinct and raw.shape[0] > 1:
            head = np.sort(np.ascontiguousarray(raw[:, :8]).view(np.uint64).reshape(raw.shape[0]))
            # distinct leading 64 bits prove the pseudonyms distinct; else compare them whole
            if bool((head[1:] == head[:-1]).any()) and len(set(result.tolist())) != result.size:
                raise ValueError("two different identifiers have the same pseudonym; report this as a bug")
        return result

    def pseudonym_array(self, identifiers: Iterable[bytes | memoryview], *, distinct: bool = False) -> np.ndarray:
        """The pseudonyms of identifiers given as UTF-8 bytes, as a numpy array of
        fixed-width bytes (dtype ``S``): the UTF-8 text of :meth:`pseudonyms`, made without
        a Python object per identifier, for hundreds of thousands at once.

        With ``distinct`` (the caller knows the identifiers differ), two of them getting
        the same pseudonym raises ``ValueError`` (80 bits: never seen, but never silent).
        """
        joined = b"".join(self._digest_chunks(identifiers))
        return self._names(np.frombuffer(joined, dtype=np.uint8).reshape(-1, 32), distinct=distinct)

    def start_pseudonym_array(
        self, data: Any, offsets: np.ndarray, *, distinct: bool = False, background: bool | None = None,
    ) -> "PseudonymJob":
        """Start computing :meth:`pseudonym_array` of packed identifiers: identifier ``i`` is
        ``data[offsets[i]:offsets[i + 1]]`` (UTF-8 bytes, packed as Arrow stores text).

        HMAC-SHA256 of short texts holds the GIL (``hashlib`` releases it only for long
        inputs), so a thread cannot overlap it with other work.  With ``background`` (by
        default: from :data:`BACKGROUND_MIN` identifiers on; Linux), a worker process -- a bare
        interpreter (``python -I -S``) running only ``hashlib`` -- hashes them while the
        caller goes on, at a lower priority (``nice`` 10: it takes a core nobody else wants,
        and does not slow the caller), and :meth:`PseudonymJob.result` collects the digests.  The
        identifiers and the key's HMAC pads go to the worker through an anonymous
        in-memory file (never on the command line, the environment or the disk), and the
        digests come back the same way.  Should the worker fail, the digests are computed
        in the caller: the result is the same either way.
        """
        bounds = np.asarray(offsets, dtype=np.int64)
        job = PseudonymJob(self, data, bounds, distinct)
        count = max(bounds.size - 1, 0)
        if background is None:
            background = count >= BACKGROUND_MIN
        if background and count and sys.executable and hasattr(os, "memfd_create"):
            job._start()
        return job


BACKGROUND_MIN = 50_000
"""Distinct identifiers from which :meth:`PseudonymKey.start_pseudonym_array` hashes in a
worker process by default (below, starting one costs more than it saves)."""


def _hmac_chunks(inner: Any, outer: Any, identifiers: Iterable[Any]) -> Iterator[bytes]:
    """HMAC-SHA256 digests (32 bytes each) of ``identifiers`` from the SHA-256 states after
    the inner and outer pads, joined a chunk at a time.  Standard library only: the worker
    process runs this function's own source."""
    icopy, ocopy = inner.copy, outer.copy
    it = iter(identifiers)
    while True:
        digests: list[bytes] = []
        append = digests.append
        for ident in islice(it, _CHUNK):
            h = icopy()
            h.update(ident)
            o = ocopy()
            o.update(h.digest())
            append(o.digest())
        if not digests:
            return
        yield b"".join(digests)
        if len(digests) < _CHUNK:
            return


_WORKER = """\
from __future__ import annotations
import hashlib
import sys
from itertools import islice
from typing import Any, Iterable, Iterator
_CHUNK = {chunk}
{source}
def _main() -> None:
    try:
        import os
        os.nice(10)  # a core nobody else wants: never slow the caller (or what it runs)
    except (AttributeError, OSError):
        pass
    buf = memoryview(sys.stdin.buffer.read())
    count = int.from_bytes(buf[:8], "little")
    inner, outer = hashlib.sha256(buf[8:72]), hashlib.sha256(buf[72:136])
    end = 136 + 8 * (count + 1)
    offsets = buf[136:end].cast("q").tolist()
    body = buf[end:]
    out = sys.stdout.buffer
    for chunk in _hmac_chunks(inner, outer, (body[a:b] for a, b in zip(offsets, offsets[1:]))):
        out.write(chunk)
    out.flush()
_main()
"""


def _worker_source() -> str | None:
    import inspect

    try:
        return _WORKER.format(chunk=_CHUNK, source=inspect.getsource(_hmac_chunks))
    except (OSError, TypeError):  # pragma: no cover - no source (frozen or compiled-only install)
        return None


def _packed(data: Any, offsets: list[int]) -> Iterator[memoryview]:
    view = memoryview(data).cast("B")
    return (view[a:b] for a, b in zip(offsets, offsets[1:]))


def _memory_file(name: str) -> IO[bytes]:
    """An anonymous file in memory (Linux ``memfd``: never on a disk)."""
    return os.fdopen(os.memfd_create(name, getattr(os, "MFD_CLOEXEC", 0)), "w+b")


class PseudonymJob:
    """Pseudonyms being computed (see :meth:`PseudonymKey.start_pseudonym_array`)."""

    __slots__ = ("_key", "_data", "_offsets", "_distinct", "_proc", "_files", "_result", "background")

    def __init__(self, key: PseudonymKey, data: Any, offsets: np.ndarray, distinct: bool) -> None:
        self._key, self._data, self._offsets, self._distinct = key, data, offsets, distinct
        self._proc: subprocess.Popen[bytes] | None = None
        self._files: list[IO[bytes]] = []
        self._result: np.ndarray | None = None
        self.background = False
        """Whether the digests were computed by a worker process."""

    def _start(self) -> None:
        source = _worker_source()
        if source is None:  # pragma: no cover
            return
        first, last = int(self._offsets[0]), int(self._offsets[-1])
        ipad, opad = self._key._pads()
        try:
            request = _memory_file("sib-pseudonym-request")
            self._files.append(request)
            answer = _memory_file("sib-pseudonym-answer")
            self._files.append(answer)
            request.write((self._offsets.size - 1).to_bytes(8, "little") + ipad + opad)
            request.write((self._offsets - first).astype("<i8").tobytes())
            request.write(memoryview(self._data).cast("B")[first:last])
            request.flush()
            request.seek(0)
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", source], stdin=request, stdout=answer,
                stderr=subprocess.DEVNULL, close_fds=True)
        except OSError:  # pragma: no cover - cannot start a process: hash in the caller
            self.close()

    def result(self) -> np.ndarray:
        """The pseudonyms (waits for the worker, if one was started)."""
        if self._result is not None:
            return self._result
        raw: np.ndarray | None = None
        if self._proc is not None:
            status = self._proc.wait()
            self._proc = None
            answer = self._files[1]
            count = self._offsets.size - 1
            if status == 0 and answer.seek(0, os.SEEK_END) == 32 * count:
                answer.seek(0)
                raw = np.frombuffer(answer.read(), dtype=np.uint8).reshape(count, 32)
                self.background = True
        if raw is None:
            joined = b"".join(self._key._digest_chunks(_packed(self._data, self._offsets.tolist())))
            raw = np.frombuffer(joined, dtype=np.uint8).reshape(-1, 32)
        self._result = self._key._names(raw, distinct=self._distinct)
        self.close()
        return self._result

    def close(self) -> None:
        """Stop the worker if it is still running (when the result is no longer wanted),
        and free what the job holds."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
        for f in self._files:
            f.close()
        self._files = []
        self._data = None
