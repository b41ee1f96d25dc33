"""Signed action links: "Block now" and "It's fine, allow for 2 h" in a carer's alert.

A link is ``{base_url}/a/{token}``. The token is::

    base64url(payload) "." base64url(tag)

- ``payload`` is compact JSON (UTF-8, no spaces), a fixed array of ten fields::

      [1, "b"|"a", session_id, alert_id, carer, device|null, expires_at, nonce,
       duration_s (0 for block), lang ("" when not known)]

  Everything that says what the link does, for whom and until when is inside it, so a link
  is single-purpose: it cannot be turned into another action, session, carer or device.
- ``tag`` is HMAC-SHA256 with the per-install secret over the payload's base64url text,
  truncated to its first 16 bytes (128 bits, half the output as RFC 2104 allows). Any
  change to the token's text, even in base64 padding bits, makes the tag wrong.
- ``nonce`` is 12 random bytes (16 characters); the control store records it when the
  link is used, so a link works once (see netwatch/control.py).

Both parts use only ``A-Z a-z 0-9 - _`` and the dot, so a token survives URLs, SMS and
chat apps. A typical token is about 140 characters; ``make_link`` refuses to make a link of
``MAX_LINK_CHARS`` or more (long carer/device names, long base URL).

The secret lives in ``<state_dir>/signing.key`` (32 bytes, mode 0600). It is never
logged, never put in events, and never leaves the box; tokens are bearer credentials and
are not logged either (``token_ref`` gives a short hash to log instead).

Time is always passed in (``now``, ``expires_at``): nothing here reads the clock except
``secrets`` for randomness.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("netwatch.actions")

ACTIONS = ("block", "allow")
LANGUAGES = ("en", "nl", "fr", "de")
DEFAULT_ALLOW_S = 2 * 3600
DEFAULT_TTL_S = 24 * 3600
SECRET_BYTES = 32
SECRET_FILE = "signing.key"
TAG_BYTES = 16
NONCE_BYTES = 12
VERSION = 1
# Links must survive SMS-like channels: the whole URL stays below this.
MAX_LINK_CHARS = 300
# A token longer than this is refused before any work is done on it.
MAX_TOKEN_CHARS = 512

_CODE = {"block": "b", "allow": "a"}
_ACTION = {v: k for k, v in _CODE.items()}
_B64 = r"[A-Za-z0-9_-]"
_TOKEN_RE = re.compile(rf"({_B64}{{8,}})\.({_B64}{{{(TAG_BYTES * 8 + 5) // 6}}})")
_NONCE_RE = re.compile(rf"{_B64}{{8,64}}")

# The HTTP status that fits each refusal.
HTTP_STATUS = {"malformed": 400, "tampered": 403, "expired": 410, "used": 410}


class ActionRefused(Exception):
    """A link that must not be acted on.

    ``reason_code`` is one of ``malformed``, ``tampered``, ``expired``, ``used``;
    ``message`` is a plain sentence (without the token). ``expires_at`` is set for
    ``expired``, ``used_at`` for ``used``; ``request`` is set when the token itself was
    genuine (expired, used).
    """

    def __init__(self, reason_code: str, message: str, *, expires_at: float | None = None,
                 used_at: float | None = None, request: ActionRequest | None = None):
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message
        self.expires_at = expires_at
        self.used_at = used_at
        self.request = request

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.reason_code, 400)


@dataclass(frozen=True)
class ActionRequest:
    """What a genuine, unexpired link asks for. ``duration_s`` is None for ``block``."""

    action: str
    session_id: int
    alert_id: str
    carer: str
    device: str | None
    expires_at: int
    nonce: str
    duration_s: int | None = None
    lang: str | None = None

    def until(self, now: float) -> float | None:
        """When an ``allow`` taken at ``now`` ends (None for ``block``)."""
        return None if self.duration_s is None else now + self.duration_s


# --------------------------------------------------------------------------- the secret


def load_or_create_secret(state_dir: str | os.PathLike[str]) -> bytes:
    """The per-install signing secret: ``<state_dir>/signing.key``, made on first use.

    32 random bytes from ``secrets``, written to a temporary file (mode 0600, fsync'd) and
    hard-linked into place, so a reader never sees a half-written key and two processes
    starting together end up with the same one. A key file readable by others is tightened
    to 0600; a damaged one (wrong size) is an error rather than silently replaced, since a
    new key makes every link already sent stop working.
    """
    folder = Path(state_dir)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / SECRET_FILE
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(SECRET_BYTES)
    fd, tmp = tempfile.mkstemp(prefix=".signing.key.", dir=folder)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, key)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _read_secret(path)  # another process was first: use its key
        _fsync_dir(folder)
        log.info("created a new signing key in %s", folder)
        return key
    finally:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _read_secret(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        st = os.fstat(fd)
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            os.fchmod(fd, 0o600)
            log.warning("%s was readable by others; its mode is now 0600", path)
        data = os.read(fd, SECRET_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) != SECRET_BYTES:
        raise ValueError(f"{path} is damaged ({len(data)} bytes, expected {SECRET_BYTES}); "
                         "remove it to make a new one (links already sent will stop working)")
    return data


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- tokens


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(secret: bytes, payload_b64: str) -> str:
    mac = hmac.new(secret, b"netwatch-action\x00" + payload_b64.encode("ascii"),
                   hashlib.sha256)
    return _b64(mac.digest()[:TAG_BYTES])


def seal(secret: bytes, fields: list[Any]) -> str:
    """Sign an already laid-out payload (the ten fields above) into a token.

    ``make_link`` is the way to make links; this is the low-level step it uses, exposed for
    tests that need a genuine signature over an unusual payload.
    """
    raw = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    payload = _b64(raw)
    return f"{payload}.{_tag(secret, payload)}"


def token_ref(token: str) -> str:
    """A short, non-reversible name for a token, for logs and records (10 hex digits)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:10]


def new_nonce() -> str:
    return _b64(secrets.token_bytes(NONCE_BYTES))


def make_token(secret: bytes, *, action: str, session_id: int, alert_id: str, carer: str,
               device: str | None, expires_at: float, nonce: str | None = None,
               duration_s: int | None = None, lang: str | None = None) -> str:
    """The token alone (what goes after ``/a/``); see ``make_link``."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    if isinstance(session_id, bool) or not isinstance(session_id, int) or session_id < 0:
        raise ValueError(f"session_id must be a whole number, not {session_id!r}")
    if not isinstance(alert_id, str) or not alert_id:
        raise ValueError("alert_id must be a non-empty string")
    if not isinstance(carer, str) or not carer:
        raise ValueError("carer must be a non-empty name")
    if device is not None and not isinstance(device, str):
        raise ValueError("device must be a name or None")
    if lang is not None and lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {', '.join(LANGUAGES)}, not {lang!r}")
    if nonce is None:
        nonce = new_nonce()
    elif not _NONCE_RE.fullmatch(nonce):
        raise ValueError("nonce must be 8 to 64 base64url characters")
    if action == "allow":
        duration_s = DEFAULT_ALLOW_S if duration_s is None else int(duration_s)
        if duration_s <= 0:
            raise ValueError("an allow link needs a positive duration")
    else:
        duration_s = 0
    return seal(secret, [VERSION, _CODE[action], session_id, alert_id, carer, device or None,
                         int(expires_at), nonce, duration_s, lang or ""])


def make_link(secret: bytes, base_url: str, *, action: str, session_id: int, alert_id: str,
              carer: str, device: str | None, expires_at: float, nonce: str | None = None,
              duration_s: int | None = None, lang: str | None = None) -> str:
    """A signed, single-use, expiring link: ``{base_url}/a/{token}``.

    ``action`` is ``block`` or ``allow``; an ``allow`` lasts ``duration_s`` (default 2 h)
    from the moment it is used. ``expires_at`` is epoch seconds (the caller chooses; now +
    24 h is usual). ``nonce`` is random unless given (tests). ``lang`` (en, nl, fr, de) is
    the carer's language for the confirmation page. Raises ValueError for bad fields or a
    link of ``MAX_LINK_CHARS`` or more.
    """
    token = make_token(secret, action=action, session_id=session_id, alert_id=alert_id,
                       carer=carer, device=device, expires_at=expires_at, nonce=nonce,
                       duration_s=duration_s, lang=lang)
    url = f"{base_url.rstrip('/')}/a/{token}"
    if len(url) >= MAX_LINK_CHARS:
        raise ValueError(f"the {action} link would be {len(url)} characters (at most "
                         f"{MAX_LINK_CHARS - 1}): shorten the base URL or the carer/device "
                         "names")
    return url


def verify(secret: bytes, token: str, now: float) -> ActionRequest:
    """Check a token's form, signature and expiry; return what it asks for.

    Raises ActionRefused: ``malformed`` (not a token, cut short, unknown layout),
    ``tampered`` (the signature does not match: changed, or made with another secret),
    ``expired`` (``now >= expires_at``). Whether it was already used is the control
    store's check.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise ActionRefused("malformed", "This is not a netwatch action link.")
    m = _TOKEN_RE.fullmatch(token)
    if m is None:
        raise ActionRefused("malformed", "The link is incomplete or damaged.")
    payload_b64, tag = m.group(1), m.group(2)
    if not hmac.compare_digest(_tag(secret, payload_b64), tag):
        raise ActionRefused("tampered", "The link was changed, or it was not made by this "
                                        "netwatch.")
    req = _parse(payload_b64)
    if now >= req.expires_at:
        raise ActionRefused("expired", "The link has expired.", expires_at=req.expires_at,
                            request=req)
    return req


def peek_lang(token: str) -> str | None:
    """The language a token's payload names, without checking the signature.

    Only for choosing the language of a refusal page; never for anything else.
    """
    m = _TOKEN_RE.fullmatch(token) if len(token) <= MAX_TOKEN_CHARS else None
    if m is None:
        return None
    try:
        fields = json.loads(_unb64(m.group(1)).decode("utf-8"))
        lang = fields[9]
    except (ValueError, binascii.Error, UnicodeDecodeError, IndexError, TypeError, KeyError):
        return None
    return lang if lang in LANGUAGES else None


def _parse(payload_b64: str) -> ActionRequest:
    bad = ActionRefused("malformed", "The link's contents are not understood by this "
                                     "netwatch.")
    try:
        fields = json.loads(_unb64(payload_b64).decode("utf-8"))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad from None
    if not isinstance(fields, list) or len(fields) != 10 or fields[0] != VERSION:
        raise bad
    _v, code, session_id, alert_id, carer, device, expires_at, nonce, duration_s, lang = fields
    ok = (code in _ACTION
          and isinstance(session_id, int) and not isinstance(session_id, bool)
          and session_id >= 0
          and isinstance(alert_id, str) and alert_id
          and isinstance(carer, str) and carer
          and (device is None or isinstance(device, str))
          and isinstance(expires_at, int) and not isinstance(expires_at, bool)
          and isinstance(nonce, str) and _NONCE_RE.fullmatch(nonce)
          and isinstance(duration_s, int) and not isinstance(duration_s, bool)
          and isinstance(lang, str) and (lang == "" or lang in LANGUAGES))
    if not ok:
        raise bad
    action = _ACTION[code]
    if (action == "allow") != (duration_s > 0):
        raise bad
    return ActionRequest(action=action, session_id=session_id, alert_id=alert_id,
                         carer=carer, device=device, expires_at=expires_at, nonce=nonce,
                         duration_s=duration_s if action == "allow" else None,
                         lang=lang or None)


# --------------------------------------------------------------------------- wiring


def links_for_alert(secret: bytes, base_url: str, alert: dict[str, Any], carer: str,
                    now: float, ttl_s: float = DEFAULT_TTL_S, *, lang: str | None = None,
                    allow_s: int = DEFAULT_ALLOW_S) -> list[tuple[str, str]]:
    """The action links for one alert event body, for one carer.

    ``alert`` is the ``alert`` object of an alert event: ``alert["actions"]`` says which
    kinds to offer (block, allow; others are ignored), in that order. Each link expires
    ``ttl_s`` after ``now``; ``lang`` is the carer's language for the confirmation page.
    Returns ``[("block", url), ("allow", url)]`` (fewer when fewer actions are offered).
    """
    out: list[tuple[str, str]] = []
    for kind in alert.get("actions") or []:
        if kind not in ACTIONS or any(k == kind for k, _ in out):
            continue
        out.append((kind, make_link(
            secret, base_url, action=kind, session_id=alert["session_id"],
            alert_id=str(alert["id"]), carer=carer, device=alert.get("device"),
            expires_at=now + ttl_s, duration_s=allow_s if kind == "allow" else None,
            lang=lang)))
    return out
