"""Plain HTTP: the first request's Host and path, for installer downloads and vendor hosts.

A request line is "METHOD SP request-target SP HTTP/1.x CRLF", then header fields up to an
empty line (RFC 9112 §3 and §5). netwatch reads only the first request of a connection: an
installer fetched from a tool's download host, or any file ending like an installer on a
tool's own host, is a ``download``; a request to a tool's relay or ID server name is reported
with that name's role, as a TLS server name would be.
"""

from __future__ import annotations

import re

from ..signatures import DETECTING_ROLES
from . import GIVE_UP, Detection, Evidence, FlowView, Recogniser, Result, register

METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"OPTIONS ", b"CONNECT ")
REQUEST_LINE = re.compile(rb"([A-Z]+) (\S+) HTTP/1\.[01]\r?\n")
HOST = re.compile(rb"\r?\nhost:[ \t]*([^\r\n]+)", re.IGNORECASE)
MAX_HEAD = 8192


@register
class HttpRecogniser(Recogniser):
    name = "http"
    protos = (6,)


    def could_start(self, proto: int, first: int) -> bool:
        return any(m[0] == first for m in METHODS)

    def inspect(self, flow: FlowView) -> Result:
        cts = bytes(flow.streams[0][:MAX_HEAD])
        if not cts:
            return None
        if not any(cts.startswith(m) or m.startswith(cts) for m in METHODS):
            return GIVE_UP
        end = cts.find(b"\r\n\r\n")
        if end < 0:
            end = cts.find(b"\n\n")
        if end < 0:
            return GIVE_UP if len(cts) >= MAX_HEAD else None
        head = cts[:end + 2]
        line = REQUEST_LINE.match(head)
        host = HOST.search(head)
        if line is None or host is None:
            return GIVE_UP
        hostname = host.group(1).decode("latin-1").strip().lower()
        if hostname.startswith("["):
            return GIVE_UP  # an IPv6 literal names no vendor
        hostname = hostname.rsplit(":", 1)[0] if hostname.count(":") == 1 else hostname
        target = line.group(2).decode("latin-1")
        if target.startswith(("http://", "https://")):  # absolute form, through a proxy
            target = "/" + target.split("/", 3)[-1] if target.count("/") >= 3 else "/"
        sigs = self.signatures
        dl = sigs.match_download(hostname, target)
        if dl is not None:
            tool, why = dl
            return Detection(tool, "download", "high", [
                Evidence("http_host", hostname, why),
                Evidence("payload", f"{line.group(1).decode()} {target[:200]}", "HTTP request")])
        m = sigs.match_name(hostname, "sni")
        if m is not None and m.role in DETECTING_ROLES:
            role = sigs.role_on_port(m, flow.proto, flow.server_port)
            return Detection(m.tool, role, m.confidence,
                             [Evidence("http_host", hostname, m.detail())])
        return GIVE_UP
