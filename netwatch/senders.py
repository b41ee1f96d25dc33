"""Alert senders: deliver one message to one notification address (an Apprise-style URL).

Three services are built in, so alerts work on a router where Apprise cannot be installed:

``ntfy://[user:password@]host[:port]/topic[/topic2…][?priority=…&token=…&tags=…]``, ``ntfys://…``
    A JSON publish to the server root (ntfy's "publish as JSON"): ``topic``, ``title``,
    ``message``, ``priority`` (info 3, warning 4, critical 5; ``?priority=`` overrides),
    ``tags`` (an emoji shortcode per severity, then the message's own), and ``actions``: a
    ``view`` button per action, which opens the signed link in the phone's browser.
    ``ntfy://topic`` (no host) and any ``ntfy.sh`` address go to https://ntfy.sh, as in
    Apprise. Credentials: ``user:password@`` (Basic), ``?token=tk_…`` or ``tk_…@host``
    (Bearer).
``json://[user:password@]host[:port]/path[?+Header=value…]``, ``jsons://…``
    An HTTP POST of the message as JSON: Apprise's generic fields (``version``, ``title``,
    ``message``, ``type``) and netwatch's (``body``, ``severity``, ``key``, ``alert_id``,
    ``session_id``, ``carer``, ``language``, ``tags``, ``actions``, ``created``, ``id``).
``mailto://user:password@host[:port][/to@addr…]?to=…&from=…&smtp=…&mode=…``, ``mailtos://…``
    SMTP, with the address shape Apprise uses, so one line works with both. ``mailto`` is
    plain SMTP on port 25 (upgraded with STARTTLS when the server offers it and there is a
    password to protect); ``mailtos`` is STARTTLS on 587, or implicit TLS with ``mode=ssl``
    or port 465. ``smtp=`` names the server when it is not the host; the recipients are the
    path and ``to=`` (default: the sender). Plain-text body with a line per action link,
    ``Subject`` the title, ``Message-ID`` derived from the outbox row, and
    ``X-Netwatch-Severity``/``X-Netwatch-Id``/``X-Netwatch-Key`` headers. Apprise knows the
    mail servers of big providers (``mailto://user:pass@gmail.com``); netwatch does not:
    name the server with ``smtp=`` (``mailtos://user:app-password@gmail.com?smtp=
    smtp.gmail.com``), a line both read the same way.

Every other scheme (``tgram://``, ``signal://``, ``pover://``, ``matrix://``, ``hassio://``…)
goes through Apprise when it is installed (``pip install netwatch[alerts]``), with the
severity as Apprise's notify type (info, warning, failure).

Duplicates. Delivery is at least once (see netwatch/outbox.py): a message can arrive twice
when netwatch was stopped between sending and recording it. Every delivery carries the same
identity both times, so a receiver can drop the second copy: the HTTP header
``X-Netwatch-Id`` (ntfy, json) or the ``Message-ID`` (e-mail), plus ``X-Netwatch-Key`` (the
conversation: one per session and carer) and ``X-Netwatch-Alert`` (the alert's ``id`` in
the event log).

A sender returns on success or raises :class:`SendError`. Addresses carry tokens and
passwords: error texts are scrubbed of every secret part of the address before they leave
this module, and addresses are only ever shown masked (``netwatch.household.mask_url``).
"""

from __future__ import annotations

import base64
import email.policy
import email.utils
import http.client
import json
import logging
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from .household import MASK, mask_url
from .messages import Message

HTTP_TIMEOUT_S = 10.0
SMTP_TIMEOUT_S = 10.0
# A whole delivery (connect, TLS, request, answer; every topic of an ntfy address; the SMTP
# dialogue): ntfy and webhooks answer in well under a second and an SMTP exchange takes a
# few round trips, so 30 s is generous. The socket timeout alone does not bound a send: a
# receiver dripping one byte every few seconds never trips it and held a send for minutes.
SEND_DEADLINE_S = 30.0
APPRISE_MISSING = "apprise is not installed; install netwatch[alerts] or use ntfy/json/mailto"
SEVERITIES = ("info", "warning", "critical")
NTFY_PRIORITY = {"info": 3, "warning": 4, "critical": 5}
NTFY_PRIORITY_NAMES = {"min": 1, "low": 2, "default": 3, "normal": 3, "high": 4, "max": 5,
                       "urgent": 5, "emergency": 5}
NTFY_SEVERITY_TAG = {"info": "information_source", "warning": "warning",
                     "critical": "rotating_light"}
NTFY_CLOUD = "ntfy.sh"
NTFY_MAX_ACTIONS = 3  # ntfy shows at most three buttons
APPRISE_TYPE = {"info": "info", "warning": "warning", "critical": "failure"}
NATIVE_SCHEMES = ("ntfy", "ntfys", "json", "jsons", "mailto", "mailtos")
ERROR_MAX = 300  # characters of a service's answer kept in an error

log = logging.getLogger("netwatch.senders")


class SendError(Exception):
    """A delivery failed. The text names the address masked and never holds its secrets."""


@dataclass(frozen=True, slots=True)
class DeliveryId:
    """Who a delivery is, for receivers that drop duplicates.

    ``row`` and ``revision`` are the outbox row and its content version (a pending row's
    content is replaced by newer messages of the same conversation); ``instance`` tells
    outboxes apart, so a reinstalled box starting again at row 1 does not reuse the ids of
    the old one (e-mail providers silently drop a second message with a known Message-ID).
    """

    row: int
    revision: int
    instance: str
    key: str

    @property
    def value(self) -> str:
        """The ``X-Netwatch-Id`` header: ``<row>.<revision>@<instance>``."""
        return f"{self.row}.{self.revision}@{self.instance}"

    def message_id(self, domain: str) -> str:
        return f"<netwatch.{self.row}.{self.revision}.{self.instance}@{domain or 'netwatch'}>"


class Sender(Protocol):
    def send(self, target: str, message: Message, delivery: DeliveryId) -> None: ...


# --- secrets ------------------------------------------------------------------------------


def secret_parts(url: str) -> list[str]:
    """The parts of ``url`` that may be secret: user, password, path segments, query values,
    fragment, and a "host" that is really a token (``tgram://123:ABC/``). Longest first."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return [url] if len(url) >= 3 else []
    parts: set[str] = set()
    authority, _, tail = rest.partition("/")
    for mark in ("?", "#"):
        if mark in authority:
            authority, _, more = authority.partition(mark)
            tail = mark + more + tail
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        user, _, password = userinfo.partition(":")
        parts.update((user, password, userinfo))
    masked_host = mask_url(f"{scheme}://{hostport}")
    if masked_host.endswith(MASK):  # the host is a token, or carries one as a port
        parts.add(hostport)
        parts.update(hostport.split(":"))
    path, _, query = tail.partition("?")
    query, _, fragment = query.partition("#")
    path, _, frag2 = path.partition("#")
    parts.update(s for s in path.split("/") if s)
    parts.update((fragment, frag2, query))
    for k, v in parse_qsl(query.replace("+", "%2B"), keep_blank_values=True):
        parts.update((k, v))
        parts.update(v.replace(";", ",").split(","))
    out: set[str] = set()
    for p in parts:
        if len(p) >= 3:
            out.add(p)
            u = unquote(p)
            if len(u) >= 3:
                out.add(u)
                out.add(quote(u, safe=""))
    # Query *names* like "to" or "from" are not secret; only long tokens matter, but a short
    # harmless word must not be blanked out of every error either.
    return sorted(out, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` with ``url`` and every secret part of it replaced by ``****``."""
    if not text:
        return text
    text = text.replace(url, mask_url(url))
    for secret in secret_parts(url):
        if secret.lower() in _HARMLESS:
            continue
        text = re.sub(re.escape(secret), MASK, text, flags=re.IGNORECASE)
    return text


# Query names and values that occur in ordinary error texts and are not secrets.
_HARMLESS = {"to", "from", "smtp", "mode", "ssl", "starttls", "priority", "token", "tags",
             "user", "pass", "name", "verify", "yes", "no", "true", "false", "high", "max",
             "urgent", "default", "low", "min", "auth", "basic", "cc", "bcc", "format",
             "text", "html", "markdown", "json", "ntfy", "mailto", "insecure", "https",
             "http", "none"}


# --- the dispatcher -----------------------------------------------------------------------


class Senders:
    """Dispatch by URL scheme: the built-in services, else Apprise. ``timeout`` bounds each
    socket operation, ``deadline`` the whole send of a built-in service (Apprise's services
    keep their own timeouts; the outbox sends to each target on its own thread, so a slow
    one holds back no other)."""

    def __init__(self, timeout: float = HTTP_TIMEOUT_S, deadline: float = SEND_DEADLINE_S):
        self.timeout = timeout
        self.deadline = deadline

    def send(self, target: str, message: Message, delivery: DeliveryId) -> None:
        scheme = target.partition("://")[0].lower()
        fn = _NATIVE.get(scheme, _send_apprise)
        budget = _Budget(self.timeout, self.deadline)
        try:
            fn(target, message, delivery, budget)
        except SendError as e:
            raise SendError(scrub(str(e), target)) from None
        except Exception as e:  # a bug or an unforeseen library error: still only a failure
            raise SendError(scrub(f"{mask_url(target)}: {type(e).__name__}: {e}", target)
                            ) from None


def send(target: str, message: Message, delivery: DeliveryId,
         timeout: float = HTTP_TIMEOUT_S, deadline: float = SEND_DEADLINE_S) -> None:
    Senders(timeout, deadline).send(target, message, delivery)


class _Budget:
    """The time one send may take: ``timeout`` per socket operation, ``deadline`` in all."""

    def __init__(self, timeout: float, deadline: float):
        self.timeout = timeout
        self.deadline = deadline
        self.until = time.monotonic() + deadline

    def left(self) -> float:
        return self.until - time.monotonic()

    def socket_timeout(self, what: str, masked: str) -> float:
        """The timeout for the next connection: the per-operation one, or what is left."""
        left = self.left()
        if left <= 0:
            raise SendError(f"{what} {masked}: cannot deliver: {self.expired()}")
        return min(self.timeout, left)

    def expired(self) -> str:
        return f"no complete answer within {self.deadline:g} s"


class _Watchdog:
    """Shuts a connection's socket down when the send's deadline passes, which ends any
    blocked read or write at once (``sock_of`` is asked then: the socket may be new)."""

    def __init__(self, budget: _Budget, sock_of: Callable[[], socket.socket | None]):
        self.fired = False
        self._sock_of = sock_of
        self._timer = threading.Timer(max(budget.left(), 0.0), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        sock = self._sock_of()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


# --- URL parsing --------------------------------------------------------------------------


@dataclass(slots=True)
class _Url:
    scheme: str
    user: str
    password: str
    host: str
    port: int | None
    path: list[str]
    query: dict[str, str]
    raw_query: list[tuple[str, str]]
    masked: str


def _parse(url: str) -> _Url:
    masked = mask_url(url)
    try:
        sp = urlsplit(url)
        port = sp.port
    except ValueError:
        raise SendError(f"{masked}: not a valid address (host or port)") from None
    # A "+" is kept as itself (Apprise's "+Header=value", or a password), not a space.
    raw_query = parse_qsl(sp.query.replace("+", "%2B"), keep_blank_values=True)
    return _Url(scheme=sp.scheme.lower(), user=unquote(sp.username or ""),
                password=unquote(sp.password or ""), host=sp.hostname or "", port=port,
                path=[unquote(p) for p in sp.path.split("/") if p],
                query={k.lower(): v for k, v in raw_query}, raw_query=raw_query,
                masked=masked)


def _yes(value: str | None, default: bool = True) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() not in ("no", "false", "0", "off", "n")


def _action_lines(message: Message) -> list[str]:
    """A "label: url" line per action, for text-only services; none the body already has
    (netwatch.messages.render writes them into the body)."""
    lines = [f"{a.label}: {a.url}" for a in message.actions]
    return [line for line in lines if line not in message.body]


# --- HTTP ---------------------------------------------------------------------------------


def _describe_oserror(e: BaseException, timeout: float) -> str:
    if isinstance(e, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, socket.gaierror):
        return f"host name not found ({e.strerror or e})"
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {e.verify_message or e}"
    if isinstance(e, ssl.SSLError):
        return f"TLS error: {e.reason or e}"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _post(u: _Url, secure: bool, path: str, body: bytes, headers: dict[str, str],
          budget: _Budget, what: str) -> tuple[int, str]:
    """POST ``body``; returns (status, response text); raises SendError when unreachable or
    when the answer is not complete by the budget's deadline."""
    host, port = u.host, u.port
    timeout = budget.socket_timeout(what, u.masked)
    if secure:
        ctx = ssl.create_default_context()
        if not _yes(u.query.get("verify")):
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    dog = _Watchdog(budget, lambda: conn.sock)
    try:
        with dog:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read(64 * 1024).decode("utf-8", "replace")
        return resp.status, text
    except (OSError, http.client.HTTPException) as e:
        why = budget.expired() if dog.fired else _describe_oserror(e, timeout)
        raise SendError(f"{what} {u.masked}: cannot deliver: {why}") from None
    finally:
        conn.close()


def _http_error(what: str, u: _Url, status: int, text: str) -> SendError:
    detail = ""
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            detail = str(data.get("error") or data.get("message") or "")
    except ValueError:
        pass
    if not detail:
        detail = " ".join(text.split())
    reason = http.client.responses.get(status, "")
    out = f"{what} {u.masked}: HTTP {status}" + (f" {reason}" if reason else "")
    if detail:
        out += ": " + detail[:ERROR_MAX]
    return SendError(out)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _common_headers(delivery: DeliveryId, message: Message) -> dict[str, str]:
    return {"Content-Type": "application/json; charset=utf-8",
            "User-Agent": "netwatch",
            "X-Netwatch-Id": delivery.value,
            # Which alert this is (as in the event log), as the e-mail's header says too.
            "X-Netwatch-Alert": quote(message.alert_id, safe=":@-._~ "),
            # The key holds the carer's name, which may not be ASCII.
            "X-Netwatch-Key": quote(delivery.key, safe=":@-._~ ")}


# --- ntfy ---------------------------------------------------------------------------------


def ntfy_priority(value: str) -> int:
    v = value.strip().lower()
    if v.isdigit() and 1 <= int(v) <= 5:
        return int(v)
    if v in NTFY_PRIORITY_NAMES:
        return NTFY_PRIORITY_NAMES[v]
    raise SendError(f"unknown ntfy priority {value!r}: use 1-5, min, low, default, high, "
                    "max or urgent")


def ntfy_payload(topic: str, message: Message, priority: int | None = None,
                 extra_tags: Iterable[str] = ()) -> dict[str, Any]:
    """The JSON body ntfy's publish-as-JSON API takes (POSTed to the server root)."""
    tags: list[str] = []
    for t in (NTFY_SEVERITY_TAG.get(message.severity, "bell"), *message.tags, *extra_tags):
        if t and t not in tags:
            tags.append(t)
    payload: dict[str, Any] = {
        "topic": topic,
        "title": message.title,
        "message": message.body,
        "priority": priority or NTFY_PRIORITY.get(message.severity, 3),
        "tags": tags,
    }
    actions = [{"action": "view", "label": a.label, "url": a.url}
               for a in message.actions[:NTFY_MAX_ACTIONS]]
    if actions:
        payload["actions"] = actions
    if len(message.actions) > NTFY_MAX_ACTIONS:  # ntfy shows three; the rest as text
        payload["message"] += "\n\n" + "\n".join(
            f"{a.label}: {a.url}" for a in message.actions[NTFY_MAX_ACTIONS:])
    return payload


def _send_ntfy(url: str, message: Message, delivery: DeliveryId, budget: _Budget) -> None:
    u = _parse(url)
    secure = u.scheme == "ntfys"
    topics = list(u.path)
    host_is_name = "." in u.host or u.host == "localhost" or ":" in u.host
    if not topics and u.host and not host_is_name:  # ntfy://topic, Apprise's cloud form
        topics, u.host, u.port = [u.host], NTFY_CLOUD, None
    if u.host.lower() == NTFY_CLOUD:
        secure = True
    if not topics:
        raise SendError(f"ntfy {u.masked}: no topic (ntfy://host/topic)")
    headers = _common_headers(delivery, message)
    token = u.query.get("token", "")
    if not token and u.user.lower().startswith("tk_") and not u.password:
        token = u.user
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif u.user or u.password:
        headers["Authorization"] = _basic(u.user, u.password)
    priority = ntfy_priority(u.query["priority"]) if u.query.get("priority") else None
    extra_tags = [t.strip() for t in u.query.get("tags", "").split(",") if t.strip()]
    for topic in topics:
        body = json.dumps(ntfy_payload(topic, message, priority, extra_tags),
                          ensure_ascii=False).encode("utf-8")
        status, text = _post(u, secure, "/", body, headers, budget, "ntfy")
        if not 200 <= status < 300:
            raise _http_error("ntfy", u, status, text)


# --- JSON webhook -------------------------------------------------------------------------


def webhook_payload(message: Message, delivery: DeliveryId) -> dict[str, Any]:
    return {
        # Apprise's json:// fields, so a receiver written for Apprise reads it too.
        "version": "1.0",
        "title": message.title,
        "message": message.body,
        "type": APPRISE_TYPE.get(message.severity, "info"),
        # netwatch's own.
        "body": message.body,
        "severity": message.severity,
        "key": message.key,
        "alert_id": message.alert_id,
        "session_id": message.session_id,
        "carer": message.carer,
        "language": message.language,
        "tags": list(message.tags),
        "actions": [{"kind": a.kind, "label": a.label, "url": a.url} for a in message.actions],
        "created": message.created,
        "id": delivery.value,
    }


def _send_json(url: str, message: Message, delivery: DeliveryId, budget: _Budget) -> None:
    u = _parse(url)
    if not u.host:
        raise SendError(f"webhook {u.masked}: no host (json://host/path)")
    headers = _common_headers(delivery, message)
    if u.user or u.password:
        headers["Authorization"] = _basic(u.user, u.password)
    passed: list[tuple[str, str]] = []
    for k, v in u.raw_query:
        if k.startswith("+") and len(k) > 1:
            headers[k[1:]] = v
        elif k.lower() != "verify":
            passed.append((k, v))
    path = "/" + "/".join(quote(p, safe="@:-._~!$&'()*+,;=") for p in u.path)
    if passed:
        path += "?" + urlencode(passed)
    body = json.dumps(webhook_payload(message, delivery), ensure_ascii=False).encode("utf-8")
    status, text = _post(u, u.scheme == "jsons", path, body, headers, budget, "webhook")
    if not 200 <= status < 300:
        raise _http_error("webhook", u, status, text)


# --- e-mail -------------------------------------------------------------------------------


_ADDR_SPLIT = re.compile(r"[\s,;]+")


def _addresses(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        for a in _ADDR_SPLIT.split(v):
            a = a.strip()
            if a and "@" in a and a not in out:
                out.append(a)
    return out


def mail_message(message: Message, delivery: DeliveryId, sender: str,
                 to: list[str], cc: list[str] | None = None,
                 sender_name: str | None = None) -> EmailMessage:
    """The e-mail for ``message``: plain text, a line per action link."""
    m = EmailMessage(policy=email.policy.SMTP)
    m["Subject"] = message.title
    m["From"] = email.utils.formataddr((sender_name, sender)) if sender_name else sender
    m["To"] = ", ".join(to)
    if cc:
        m["Cc"] = ", ".join(cc)
    m["Date"] = email.utils.formatdate(localtime=True)
    domain = sender.rpartition("@")[2] or "netwatch"
    m["Message-ID"] = delivery.message_id(domain)
    m["X-Netwatch-Id"] = delivery.value
    m["X-Netwatch-Key"] = delivery.key
    m["X-Netwatch-Alert"] = message.alert_id
    m["X-Netwatch-Severity"] = message.severity
    if message.severity == "critical":
        m["Importance"] = "high"
        m["X-Priority"] = "1"
    lines = [message.body.rstrip("\n")]
    links = _action_lines(message)
    if links:
        lines += ["", *links]
    m.set_content("\n".join(lines) + "\n")
    return m


def _send_mail(url: str, message: Message, delivery: DeliveryId, budget: _Budget) -> None:
    u = _parse(url)
    q = u.query
    user = q.get("user") or u.user
    password = q.get("pass") or q.get("password") or u.password
    host = q.get("smtp") or u.host
    if not host:
        raise SendError(f"e-mail {u.masked}: no mail server (mailto://user:pass@host)")
    mode = (q.get("mode") or "").lower()
    if u.scheme == "mailtos":
        if mode not in ("", "ssl", "starttls", "insecure"):
            raise SendError(f"e-mail {u.masked}: mode must be ssl or starttls")
        if not mode:
            mode = "ssl" if u.port == 465 else "starttls"
    else:
        mode = mode if mode in ("ssl", "starttls") else "plain"
    port = u.port or {"ssl": 465, "starttls": 587}.get(mode, 25)
    domain = u.host or host
    if q.get("from"):
        name, sender = email.utils.parseaddr(q["from"])
    else:
        name, sender = "", user if "@" in user else f"{user or 'netwatch'}@{domain}"
    sender_name = q.get("name") or name or None
    to = _addresses([*u.path, q.get("to", "")]) or [sender]
    cc = _addresses([q.get("cc", "")])
    bcc = _addresses([q.get("bcc", "")])
    msg = mail_message(message, delivery, sender, to, cc, sender_name)
    ctx = ssl.create_default_context()
    if not _yes(q.get("verify")):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    # The client's name in EHLO: the host name, without the DNS lookup smtplib would do.
    local = socket.gethostname() or "netwatch"
    step = "connect"
    timeout = budget.socket_timeout("e-mail", u.masked)
    smtp: smtplib.SMTP = (
        smtplib.SMTP_SSL(local_hostname=local, timeout=timeout, context=ctx) if mode == "ssl"
        else smtplib.SMTP(local_hostname=local, timeout=timeout))
    dog = _Watchdog(budget, lambda: getattr(smtp, "sock", None))
    try:
        with dog, smtp:
            # Connected here, not in the constructor, so the watchdog covers it; the name
            # TLS checks (SMTP_SSL, STARTTLS) is the one the constructor would have kept.
            smtp._host = host  # type: ignore[attr-defined]
            smtp.connect(host, port)
            step = "greet"
            smtp.ehlo()
            if mode == "starttls" or (mode == "plain" and password
                                      and smtp.has_extn("starttls")):
                step = "STARTTLS"
                smtp.starttls(context=ctx)
                smtp.ehlo()
            if user and password:
                step = "log in"
                smtp.login(user, password)
            step = "send"
            refused = smtp.send_message(msg, from_addr=sender, to_addrs=[*to, *cc, *bcc])
    except smtplib.SMTPResponseException as e:
        text = e.smtp_error.decode("utf-8", "replace") if isinstance(e.smtp_error, bytes) \
            else str(e.smtp_error)
        raise SendError(f"e-mail {u.masked}: {step}: SMTP {e.smtp_code} "
                        f"{' '.join(text.split())[:ERROR_MAX]}") from None
    except smtplib.SMTPRecipientsRefused as e:
        raise SendError(f"e-mail {u.masked}: every recipient refused "
                        f"({len(e.recipients)})") from None
    except (smtplib.SMTPException, OSError) as e:
        if dog.fired:
            raise SendError(f"e-mail {u.masked}: {step}: {budget.expired()}") from None
        if isinstance(e, smtplib.SMTPException):
            raise SendError(f"e-mail {u.masked}: {step}: {e}") from None
        raise SendError(f"e-mail {u.masked}: {step}: {_describe_oserror(e, timeout)}"
                        ) from None
    if refused:
        log.warning("e-mail %s: %d of %d recipients refused", u.masked, len(refused),
                    len(to) + len(cc) + len(bcc))


# --- Apprise ------------------------------------------------------------------------------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception:  # a malformed log call inside Apprise must not break delivery
            pass


def _send_apprise(url: str, message: Message, delivery: DeliveryId,
                  budget: _Budget) -> None:
    masked = mask_url(url)
    try:
        import apprise
    except ImportError:
        raise SendError(f"{masked}: {APPRISE_MISSING}") from None
    body = message.body.rstrip("\n")
    links = _action_lines(message)
    if links:
        body += "\n\n" + "\n".join(links)
    # Apprise logs through the "apprise" logger, sometimes with details of the address:
    # catch its warnings for the error text (scrubbed), and keep them out of our logs. The
    # HTTP libraries under it log request paths (ntfy topics, webhook tokens) when debugging:
    # quiet them for the call.
    logger = logging.getLogger("apprise")
    capture = _Capture()
    old_propagate, old_level = logger.propagate, logger.level
    logger.addHandler(capture)
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    quieted = [(lg, lg.level) for lg in map(logging.getLogger, _CHATTY)]
    for lg, _ in quieted:
        lg.setLevel(logging.WARNING)
    try:
        ap = apprise.Apprise()
        if not ap.add(url):
            raise SendError(f"{masked}: Apprise does not understand this address"
                            + _last(capture.messages))
        ok = ap.notify(title=message.title, body=body,
                       notify_type=APPRISE_TYPE.get(message.severity, "info"))
    finally:
        logger.removeHandler(capture)
        logger.propagate = old_propagate
        logger.setLevel(old_level)
        for lg, level in quieted:
            lg.setLevel(level)
    if not ok:
        raise SendError(f"{masked}: the service did not accept the message"
                        + _last(capture.messages))


_CHATTY = ("urllib3", "requests", "requests_oauthlib", "oauthlib", "httpx", "httpcore")


def _last(messages: list[str]) -> str:
    for m in reversed(messages):
        m = " ".join(m.split())
        if m:
            return ": " + m[:ERROR_MAX]
    return ""


_NATIVE: dict[str, Callable[[str, Message, DeliveryId, _Budget], None]] = {
    "ntfy": _send_ntfy, "ntfys": _send_ntfy,
    "json": _send_json, "jsons": _send_json,
    "mailto": _send_mail, "mailtos": _send_mail,
}
