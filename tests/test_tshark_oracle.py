"""tshark as an independent oracle for netwatch's decoding, over the whole shared corpus.

For every capture listed in ../shared/pcaps/MANIFEST.tsv, three things netwatch reads out of
packets are compared with what Wireshark's dissectors (tshark) read out of the same file:

* TLS SNI: the server names of the ClientHellos on TCP connections, as netwatch's own parts
  see them (``open_capture`` -> ``decode_frame`` -> ``Flow.add_tcp_payload`` per connection
  and direction, SYN setting ``next_seq`` as pipeline.py does -> ``read_flight``), against
  ``tls.handshake.extensions_server_name``.
* DNS: the (query name, answer address) pairs that ``names.parse_response`` finds in UDP
  port-53 responses (mDNS on 5353 excluded), against ``dns.qry.name`` with the ``dns.a`` /
  ``dns.aaaa`` records of the answer section.
* Ports: the (protocol, sorted port pair) of every TCP/UDP packet ``decode_frame`` decodes,
  against tshark's outermost TCP/UDP header of packets not carried inside ICMP.

tshark is run once per capture (the host has few cores and tshark takes ~0.4 s to start), over
the frames matching ``tcp or udp`` plus IP fragments, with all the needed fields; the per-part
display filters (``tcp && tls...``, ``dns.flags.response==1 && udp.port==53``,
``(tcp or udp) && !icmp && !icmpv6``) are applied in Python on those rows, on the outermost
transport header, which is the one netwatch decodes.

Frames that are IP fragments (IPv4 MF or offset, IPv6 fragment header with offset or M) are left
out of the DNS and port comparisons on both sides, by frame number: netwatch reads a first
fragment as a whole datagram and skips the others, while tshark reassembles them.

Where tshark legitimately differs (a dissector choice, not a netwatch fault) the exception is
explicit below, with the capture named. Where netwatch is wrong, that single case is marked
``xfail(strict=True)`` with the diagnosis, so a fix turns it into a failure to be cleaned up.
"""

from __future__ import annotations

import functools
import ipaddress
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from conftest import CORPUS, needs_corpus, read_tsv
from netwatch.decode import PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_SYN, Packet, decode_frame
from netwatch.flows import SEQ_MOD, Flow
from netwatch.names import DnsError, parse_response
from netwatch.recognisers.tls import read_flight
from netwatch.sources.capture import open_capture

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(
    TSHARK is None, reason="tshark (Wireshark's command-line dissector) is not installed; "
                           "the oracle needs it (Debian: apt-get install tshark)")

pytestmark = [needs_corpus, needs_tshark]

MANIFEST = CORPUS / "MANIFEST.tsv"
CAPTURES = [r["file"] for r in read_tsv(MANIFEST)] if MANIFEST.is_file() else []

DNS_PORT = 53
MDNS_PORT = 5353
TYPE_A, TYPE_AAAA = "1", "28"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Explicit tshark decode-as options for single captures, each with its reason.
TSHARK_DECODE_AS: dict[str, list[str]] = {
    # TLS on TCP/80: tshark hands port 80 to its HTTP dissector, so without this it shows no
    # ClientHello at all and the SNI comparison would be empty on its side by construction.
    "ndpi_tls_port_80.pcapng": ["-d", "tcp.port==80,tls"],
    # AnyDesk through an AnyNet relay over TLS on TCP/80: same reason.
    "nfstream_anydesk.pcap": ["-d", "tcp.port==80,tls"],
}

# Cases where netwatch is wrong (diagnosis in the reason). Do not fix by loosening the test.
NETWATCH_WRONG: dict[tuple[str, str], str] = {}


def cases(part: str) -> list[Any]:
    if not CAPTURES:
        return [pytest.param("MANIFEST.tsv", id="corpus-missing")]  # skipped by needs_corpus
    out = []
    for name in CAPTURES:
        reason = NETWATCH_WRONG.get((part, name))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(name, id=name, marks=marks))
    return out


# ---------------------------------------------------------------------------- tshark side

FIELDS = (
    "frame.number", "frame.protocols",
    "ip.flags.mf", "ip.frag_offset", "ipv6.fraghdr.offset", "ipv6.fraghdr.more",
    "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport",
    "tls.handshake.extensions_server_name",
    "dns.flags.response", "dns.qry.name", "dns.count.answers", "dns.resp.type",
    "dns.a", "dns.aaaa",
)
ROW_FILTER = ("tcp or udp or ip.flags.mf == 1 or ip.frag_offset > 0 "
              "or ipv6.fraghdr.offset > 0 or ipv6.fraghdr.more == 1")


@dataclass
class Row:
    """One frame as tshark dissected it; every field is the list of its occurrences."""

    number: int
    layers: list[str]
    f: dict[str, list[str]] = field(default_factory=dict)

    def first(self, name: str) -> str:
        vals = self.f[name]
        return vals[0] if vals else ""

    @property
    def fragment(self) -> bool:
        return ("1" in self.f["ip.flags.mf"] or "1" in self.f["ipv6.fraghdr.more"]
                or any(v not in ("", "0") for v in self.f["ip.frag_offset"])
                or any(v not in ("", "0") for v in self.f["ipv6.fraghdr.offset"]))

    @property
    def in_icmp(self) -> bool:
        return "icmp" in self.layers or "icmpv6" in self.layers

    @property
    def transport(self) -> str | None:
        """The outermost of tcp/udp in the protocol stack (the header netwatch decodes)."""
        for layer in self.layers:
            if layer in ("tcp", "udp"):
                return layer
        return None

    def ports(self) -> tuple[int, int] | None:
        t = self.transport
        if t is None:
            return None
        # occurrence 0 is the outermost header (tunnelled ones follow it)
        sp, dp = self.first(f"{t}.srcport"), self.first(f"{t}.dstport")
        if not sp or not dp:
            return None
        return int(sp), int(dp)


@functools.cache
def tshark_rows(name: str) -> tuple[Row, ...]:
    assert TSHARK is not None
    cmd = [TSHARK, "-n", "-r", str(CORPUS / name), *TSHARK_DECODE_AS.get(name, []),
           "-Y", ROW_FILTER, "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a",
           "-E", "aggregator=,"]
    for f in FIELDS:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"tshark failed on {name}: {proc.stderr}"
    rows = []
    for line in proc.stdout.splitlines():
        cols = line.split("\t")
        assert len(cols) == len(FIELDS), f"tshark row with {len(cols)} columns: {line!r}"
        vals = {k: [x for x in v.split(",") if x] if v else [] for k, v in zip(FIELDS, cols)}
        rows.append(Row(int(cols[0]), cols[1].split(":"), vals))
    return tuple(rows)


def fragment_frames(name: str) -> set[int]:
    return {r.number for r in tshark_rows(name) if r.fragment}


def tshark_snis(name: str) -> set[str]:
    out: set[str] = set()
    for r in tshark_rows(name):
        # Only TLS carried in TCP: read_flight reads TCP byte streams. tshark also shows the
        # ClientHello inside QUIC Initial packets (zeek_chromium-dpd-custom-port-4433.pcap,
        # zeek_curl-8.1.2-dev-http3-www-google-de.pcap) and inside MS-RDPEUDP datagrams
        # (ndpi_rdp2.pcap, SNI WIN-8QSO0D3OKBI.HARDENING.COM), which are UDP and not this test.
        if r.transport != "tcp":
            continue
        out.update(v.lower() for v in r.f["tls.handshake.extensions_server_name"] if v)
    return out


def tshark_dns(name: str) -> set[tuple[str, IPAddress]]:
    out: set[tuple[str, IPAddress]] = set()
    for r in tshark_rows(name):
        if r.transport != "udp" or r.in_icmp or r.fragment:
            continue
        ports = r.ports()
        if ports is None or DNS_PORT not in ports or MDNS_PORT in ports:
            continue
        if r.first("dns.flags.response") != "1" or not r.f["dns.qry.name"]:
            continue
        # parse_response pairs the first question's name with the answers' addresses.
        qname = r.first("dns.qry.name").lower()
        # dns.a / dns.aaaa also occur for authority and additional records; the records
        # come in message order, so the answer section's A/AAAA are the first ones, as many
        # as there are A/AAAA among the first dns.count.answers record types.
        n_answers = int(r.first("dns.count.answers") or 0)
        types = r.f["dns.resp.type"][:n_answers]
        addrs = (r.f["dns.a"][:types.count(TYPE_A)] + r.f["dns.aaaa"][:types.count(TYPE_AAAA)])
        out.update((qname, ipaddress.ip_address(a)) for a in addrs)
    return out


def tshark_ports(name: str) -> set[tuple[int, ...]]:
    out: set[tuple[int, ...]] = set()
    for r in tshark_rows(name):
        if r.in_icmp or r.fragment:  # (tcp or udp) && !icmp && !icmpv6, unfragmented
            continue
        ports = r.ports()
        if ports is not None:
            proto = PROTO_TCP if r.transport == "tcp" else PROTO_UDP
            out.add((proto, *sorted(ports)))
    return out


# ---------------------------------------------------------------------------- netwatch side

def decoded(name: str) -> Iterator[tuple[int, Packet]]:
    """(frame number, decoded packet) of every frame netwatch's decoder turns into a packet."""
    for number, (_ts, linktype, frame, _wire) in enumerate(open_capture(str(CORPUS / name)), 1):
        p = decode_frame(linktype, frame)
        if type(p) is not int:
            yield number, p  # type: ignore[misc]


def netwatch_snis(name: str) -> set[str]:
    conns: dict[tuple[bytes, int, bytes, int], tuple[Flow, int]] = {}
    flows: list[Flow] = []
    for _n, (proto, sip, dip, sport, dport, flags, seq, payload) in decoded(name):
        if proto != PROTO_TCP:
            continue
        hit = conns.get((sip, sport, dip, dport))
        if hit is not None and flags & (TCP_SYN | TCP_ACK) == TCP_SYN:
            f, d = hit
            if f.next_seq[d] is not None and f.next_seq[d] != (seq + 1) % SEQ_MOD:
                hit = None  # a new connection on the same addresses and ports
        if hit is None:
            # Orientation does not matter here: both directions are read below and their
            # SNIs united, so a connection whose SYN was not captured is read all the same.
            f = Flow(len(flows) + 1, proto, sip, sport, dip, dport, 0.0)
            flows.append(f)
            conns[(sip, sport, dip, dport)] = (f, 0)
            conns[(dip, dport, sip, sport)] = (f, 1)
            hit = (f, 0)
        f, d = hit
        if flags & TCP_SYN:
            f.next_seq[d] = (seq + 1) % SEQ_MOD  # as Pipeline._packet does
        if payload:
            f.add_tcp_payload(d, seq, payload)
    out = set()
    for f in flows:
        for stream in f.streams:
            info = read_flight(stream)
            if info.sni:
                out.add(info.sni)
    return out


def netwatch_dns(name: str) -> tuple[set[tuple[str, IPAddress]], list[str]]:
    skip = fragment_frames(name)
    pairs: set[tuple[str, IPAddress]] = set()
    errors = []
    for n, (proto, _sip, _dip, sport, dport, _fl, _seq, payload) in decoded(name):
        if proto != PROTO_UDP or n in skip:
            continue
        if DNS_PORT not in (sport, dport) or MDNS_PORT in (sport, dport):
            continue
        try:
            parsed = parse_response(payload)
        except DnsError as e:
            errors.append(f"frame {n}: {e}")
            continue
        if parsed is not None:
            qname, addrs, _chain = parsed
            pairs.update((qname, ipaddress.ip_address(a)) for a, _ttl in addrs)
    return pairs, errors


def netwatch_ports(name: str) -> set[tuple[int, ...]]:
    skip = fragment_frames(name)
    return {(p[0], *sorted((p[3], p[4]))) for n, p in decoded(name) if n not in skip}


def differences(ours: set[Any], theirs: set[Any]) -> str:
    return (f"only netwatch: {sorted(ours - theirs, key=str)}\n"
            f"only tshark:   {sorted(theirs - ours, key=str)}")


# ---------------------------------------------------------------------------- tests

@pytest.mark.parametrize("capture", cases("sni"))
def test_tls_sni_names_match_tshark(capture: str) -> None:
    ours, theirs = netwatch_snis(capture), tshark_snis(capture)
    assert ours == theirs, differences(ours, theirs)


@pytest.mark.parametrize("capture", cases("dns"))
def test_dns_answers_match_tshark(capture: str) -> None:
    ours, errors = netwatch_dns(capture)
    theirs = tshark_dns(capture)
    assert ours == theirs, differences(ours, theirs) + f"\nparse_response errors: {errors}"


@pytest.mark.parametrize("capture", cases("ports"))
def test_transport_port_pairs_match_tshark(capture: str) -> None:
    ours, theirs = netwatch_ports(capture), tshark_ports(capture)
    assert ours == theirs, differences(ours, theirs)
