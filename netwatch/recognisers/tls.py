"""TLS: ClientHello SNI and ALPN, and the certificate names when they travel in clear.

Record and handshake layouts per RFC 8446 §5.1 and §4 (and RFC 5246 for TLS 1.0-1.2, where
the Certificate message is not encrypted); SNI per RFC 6066 §3, ALPN per RFC 7301 §3.1;
certificates are X.509 DER (RFC 5280 §4.1). The names found are matched against the
signature files; a name no signature knows ends the inspection of the flow.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..addresses import ip_text, is_lan_address
from ..signatures import DETECTING_ROLES
from . import GIVE_UP, Detection, Evidence, FlowView, Recogniser, Result, register

CT_CCS, CT_ALERT, CT_HANDSHAKE, CT_APPDATA = 20, 21, 22, 23
HS_CLIENT_HELLO, HS_SERVER_HELLO, HS_CERTIFICATE = 1, 2, 11
EXT_SNI, EXT_ALPN = 0, 16
# The largest handshake flight netwatch will wait for before giving up on certificates:
# certificate chains are rarely over 8 KiB (Chromium's median is ~4 KiB).
MAX_FLIGHT = 16384

_u16 = struct.Struct("!H").unpack_from


def _u24(b: bytes, o: int) -> int:
    return (b[o] << 16) | (b[o + 1] << 8) | b[o + 2]


@dataclass
class TlsInfo:
    """What one direction's first records revealed."""

    is_tls: bool = False
    complete: bool = False  # the clear part of the handshake is over (CCS/app data seen)
    client_hello: bool = False
    sni: str = ""
    alpn: list[str] = field(default_factory=list)
    version: str = ""
    certs: list[dict[str, list[str]]] = field(default_factory=list)


def looks_like_record(data: bytes | bytearray) -> bool:
    """A TLS record header: content type 20-23, version 3.x (x 0-4), sane length."""
    return (len(data) >= 5 and CT_CCS <= data[0] <= CT_APPDATA and data[1] == 3
            and data[2] <= 4 and 0 < _u16(data, 3)[0] <= 18432)


def read_flight(data: bytes | bytearray) -> TlsInfo:
    """Walk the records at the start of one direction and parse the handshake messages."""
    info = TlsInfo()
    if not looks_like_record(data):
        return info
    info.is_tls = True
    hs = bytearray()
    pos = 0
    n = len(data)
    while pos + 5 <= n:
        ctype = data[pos]
        if not (CT_CCS <= ctype <= CT_APPDATA) or data[pos + 1] != 3:
            info.complete = True
            break
        rlen = _u16(data, pos + 3)[0]
        if ctype != CT_HANDSHAKE:
            info.complete = True
            break
        if pos + 5 + rlen > n:
            hs += data[pos + 5:n]
            break
        hs += data[pos + 5:pos + 5 + rlen]
        pos += 5 + rlen
    _parse_handshakes(bytes(hs), info)
    return info


def _parse_handshakes(hs: bytes, info: TlsInfo) -> None:
    pos = 0
    while pos + 4 <= len(hs):
        mtype = hs[pos]
        mlen = _u24(hs, pos + 1)
        body = hs[pos + 4:pos + 4 + mlen]
        if len(body) < mlen:
            if mtype == HS_CLIENT_HELLO and not info.client_hello:
                _client_hello(body, info)  # SNI sits early: take what arrived
            return
        try:
            if mtype == HS_CLIENT_HELLO:
                _client_hello(body, info)
            elif mtype == HS_CERTIFICATE:
                _certificate(body, info)
        except (IndexError, struct.error, ValueError):
            return
        pos += 4 + mlen


def _client_hello(b: bytes, info: TlsInfo) -> None:
    try:
        info.version = f"{b[0]}.{b[1]}"
        p = 34
        p += 1 + b[p]  # session id
        p += 2 + _u16(b, p)[0]  # cipher suites
        p += 1 + b[p]  # compression methods
        if p + 2 > len(b):
            info.client_hello = True
            return
        end = min(len(b), p + 2 + _u16(b, p)[0])
        p += 2
        while p + 4 <= end:
            etype, elen = _u16(b, p)[0], _u16(b, p + 2)[0]
            ext = b[p + 4:p + 4 + elen]
            if etype == EXT_SNI and len(ext) >= 5 and ext[2] == 0:
                nlen = _u16(ext, 3)[0]
                info.sni = ext[5:5 + nlen].decode("ascii", "replace").lower().rstrip(".")
            elif etype == EXT_ALPN and len(ext) >= 2:
                q = 2
                while q < len(ext):
                    ln = ext[q]
                    info.alpn.append(ext[q + 1:q + 1 + ln].decode("ascii", "replace"))
                    q += 1 + ln
            p += 4 + elen
        info.client_hello = True
    except (IndexError, struct.error):
        return


def _certificate(b: bytes, info: TlsInfo) -> None:
    # TLS 1.2 Certificate: certificate_list<0..2^24-1> of opaque ASN.1Cert<1..2^24-1>.
    total = _u24(b, 0)
    p, end = 3, min(len(b), 3 + total)
    while p + 3 <= end:
        clen = _u24(b, p)
        der = b[p + 3:p + 3 + clen]
        names = certificate_names(der)
        if names:
            info.certs.append(names)
        p += 3 + clen


# ---- a minimal DER walk: just enough of X.509 to read the subject and the DNS SANs.

OID_CN = bytes.fromhex("550403")
OID_O = bytes.fromhex("55040a")
OID_SAN = bytes.fromhex("551d11")


def _tlv(b: bytes, p: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the DER element at ``p``."""
    tag = b[p]
    ln = b[p + 1]
    p += 2
    if ln & 0x80:
        k = ln & 0x7F
        if k == 0 or k > 4:
            raise ValueError("bad DER length")
        ln = int.from_bytes(b[p:p + k], "big")
        p += k
    if p + ln > len(b):
        raise ValueError("DER element runs past its container")
    return tag, p, p + ln


def _children(b: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    p = start
    while p < end:
        t, s, e = _tlv(b, p)
        out.append((t, s, e))
        p = e
    return out


def certificate_names(der: bytes) -> dict[str, list[str]]:
    """Subject CN and O, and DNS names of subjectAltName; {} when the DER does not parse."""
    try:
        _t, s, e = _tlv(der, 0)  # Certificate
        _t, s, e = _tlv(der, s)  # tbsCertificate
        fields = _children(der, s, e)
        i = 1 if fields and fields[0][0] == 0xA0 else 0  # optional [0] version
        # serial, signature, issuer, validity, subject, spki, then optional [1] [2] [3]
        subject = fields[i + 4]
        out: dict[str, list[str]] = {"CN": [], "O": [], "SAN": []}
        for _st, ss, se in _children(der, subject[1], subject[2]):  # RDN SETs
            for _at, as_, ae in _children(der, ss, se):  # AttributeTypeAndValue
                parts = _children(der, as_, ae)
                if len(parts) != 2:
                    continue
                oid = der[parts[0][1]:parts[0][2]]
                val = der[parts[1][1]:parts[1][2]].decode("utf-8", "replace")
                if oid == OID_CN:
                    out["CN"].append(val)
                elif oid == OID_O:
                    out["O"].append(val)
        for t, es, _ee in fields[i + 6:]:
            if t != 0xA3:
                continue
            _t2, s2, e2 = _tlv(der, es)  # Extensions SEQUENCE
            for _xt, xs, xe in _children(der, s2, e2):
                parts = _children(der, xs, xe)
                if der[parts[0][1]:parts[0][2]] != OID_SAN:
                    continue
                _ot, os_, _oe = parts[-1]  # extnValue OCTET STRING
                _gt, gs, ge = _tlv(der, os_)
                for nt, ns, ne in _children(der, gs, ge):
                    if nt == 0x82:  # dNSName [2] IA5String
                        out["SAN"].append(der[ns:ne].decode("ascii", "replace").lower())
        return {k: v for k, v in out.items() if v}
    except (IndexError, ValueError):
        return {}


def _is_local(ip: bytes) -> bool:
    return is_lan_address(ip)


@register
class TlsRecogniser(Recogniser):
    name = "tls"
    protos = (6,)


    def could_start(self, proto: int, first: int) -> bool:
        return CT_CCS <= first <= CT_APPDATA  # a TLS record, from the start or mid-stream

    def inspect(self, flow: FlowView) -> Result:
        cts, stc = flow.streams
        client = read_flight(cts) if cts else TlsInfo()
        server = read_flight(stc) if stc else TlsInfo()
        if cts and not client.is_tls and (not stc or not server.is_tls):
            return GIVE_UP
        sigs = self.signatures
        if client.sni and hasattr(flow, "sni"):
            flow.sni = client.sni  # for the household context (banking), not for detection
        direct = _is_local(flow.server_ip) and _is_local(flow.client_ip)
        det: Detection | None = None
        if client.client_hello:
            if client.alpn:
                alpn = sigs.match_alpn(client.alpn)
                if alpn is not None:
                    proto, role, tool = alpn
                    det = Detection(tool, "session" if direct else role, "high",
                                    [Evidence("alpn", proto)])
            if client.sni:
                m = sigs.match_name(client.sni, "sni")
                if m is not None and m.role in DETECTING_ROLES:
                    ev = Evidence("sni", client.sni, m.detail())
                    role = sigs.role_on_port(m, flow.proto, flow.server_port)
                    if det is not None and det.tool == m.tool:
                        det.evidence.append(ev)
                        det.role = role if not direct else det.role
                    elif det is None:
                        det = Detection(m.tool, "session" if direct and role != "download"
                                        else role, m.confidence, [ev])
        for certs, who in ((server.certs, "server"), (client.certs, "client")):
            for names in certs:
                rule = sigs.match_certificate(names)
                if rule is None:
                    continue
                subject = ", ".join(f"{k}={v[0]}" for k, v in names.items() if k != "SAN")
                ev = Evidence("certificate", subject, f"{who} certificate")
                if det is not None and det.tool == rule.tool:
                    if all(e.kind != "certificate" for e in det.evidence):
                        det.evidence.append(ev)
                elif det is None:
                    det = Detection(rule.tool, "session" if direct else rule.role, "high",
                                    [ev])
        if det is not None:
            return det
        if not client.sni and (client.is_tls or server.is_tls):
            net = sigs.match_network(flow.server_ip)
            if net is not None:
                return Detection(net.tool, net.role, "medium",
                                 [Evidence("address", ip_text(flow.server_ip), "vendor network"),
                                  Evidence("payload", "TLS records", "no name in the flow")])
        if not client.client_hello and not server.is_tls:
            return None
        if client.sni:
            return GIVE_UP  # a named server no signature claims: ordinary web traffic
        if (server.complete or len(stc) >= MAX_FLIGHT) and (client.complete or not cts):
            return GIVE_UP
        return None


def tls_record_stream(flow: FlowView) -> bool:
    """Either direction starts with a TLS record (used for address rules, mid-stream too)."""
    return any(looks_like_record(s) for s in flow.streams)
