"""Names from the network made safe to print: SNI, ALPN, DNS names, HTTP Host, the RDP cookie,
certificate subjects, anything a remote party chose, wherever a person reads it (the replay
summary, ``control log``, the control pages and server logs, alerts).

A module of its own, with nothing to import, so the replay's summary can use it without the
message catalogue.
"""

from __future__ import annotations

SHOWN_MAX = 200  # characters of one remote-chosen value shown; a name is rarely over 100
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    n = ord(ch)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def shown(value: object, limit: int = SHOWN_MAX) -> str:
    """A value a remote party chose (SNI, ALPN, DNS name, HTTP Host, RDP cookie, certificate
    subject, User-Agent…) made safe to print where a person reads it.

    Every character Python does not call printable (Unicode "Other" and "Separator" but the
    space: C0 and C1 controls with ESC and the OSC/CSI introducers, U+0085, U+2028/U+2029,
    bidi overrides and isolates such as U+202E, zero-width marks, lone surrogates) is shown
    as an escape (``\\x1b``, ``\\u202e``, ``\\n``), so a name cannot start a new line, move
    the cursor, set a terminal's title or reverse the text around it. Values longer than
    ``limit`` characters (escapes counted) are cut with "…". Escaped text is printable:
    ``shown`` applied twice changes nothing.
    """
    raw = value if isinstance(value, str) else str(value)
    if len(raw) > limit:  # escaping only lengthens: cut first, so a huge value costs little
        raw = raw[:limit] + "…"
    out = raw if raw.isprintable() else "".join(
        ch if ch.isprintable() else _escape(ch) for ch in raw)
    return out if len(out) <= limit else out[:limit] + "…"
