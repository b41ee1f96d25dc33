"""Bad and unusual input: never a crash, nothing silently lost."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SYNTHETIC, replay, verdicts
from netwatch import decode as dec
from netwatch.names import DnsError, parse_response
from netwatch.recognisers.tls import certificate_names, read_flight
from netwatch.sources.capture import READ_CHUNK, CaptureError, ReadStats, open_capture

DEMO = SYNTHETIC / "demo-anydesk-scam.pcap"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netwatch", *args], capture_output=True,
                          text=True, timeout=120)


def pcap_bytes(frames: list[bytes], linktype: int = 1) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for i, fr in enumerate(frames):
        out += struct.pack("<IIII", 1700000000 + i, 0, len(fr), len(fr)) + fr
    return out


def test_empty_file_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    proc = run_cli("replay", str(empty), str(DEMO))
    assert proc.returncode == 2
    errs = [ln for ln in proc.stderr.splitlines() if ln]
    assert errs == [f"netwatch: {empty}: empty file"]
    assert "anydesk" in proc.stdout  # the other file was still processed


def test_non_capture_file_is_rejected_others_processed(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a capture\n")
    missing = tmp_path / "missing.pcap"
    proc = run_cli("replay", str(text), str(missing), str(DEMO),
                   "--eve-log", str(tmp_path / "eve.json"))
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 2
    assert "not a pcap or pcapng capture" in lines[0] and str(text) in lines[0]
    assert "cannot open" in lines[1] and str(missing) in lines[1]
    assert '"tool":"anydesk"' in (tmp_path / "eve.json").read_text()


def test_truncated_last_packet_warns_and_keeps_results(tmp_path: Path) -> None:
    data = DEMO.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:-7])
    proc = run_cli("replay", str(cut))
    assert proc.returncode == 0
    assert "truncated" in proc.stderr and "warning" in proc.stderr
    assert "anydesk relay" in proc.stdout


def test_truncated_pcapng(tmp_path: Path) -> None:
    data = (SYNTHETIC / "multi-interface.pcapng").read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[:-10])
    st_ = ReadStats()
    frames = list(open_capture(str(cut), st_))
    assert st_.truncated and len(frames) == st_.packets > 0


def test_pcapng_interfaces_keep_their_link_type_and_clock() -> None:
    st_ = ReadStats()
    frames = list(open_capture(str(SYNTHETIC / "multi-interface.pcapng"), st_))
    assert st_.interfaces == [dec.LINKTYPE_ETHERNET, dec.LINKTYPE_LINUX_SLL]
    kinds = {lt for _ts, lt, _f, _w in frames}
    assert kinds == {dec.LINKTYPE_ETHERNET, dec.LINKTYPE_LINUX_SLL}
    times = [ts for ts, _lt, _f, _w in frames]
    # Both interfaces' clocks land in the same day (a wrong unit would be 1000x off).
    assert max(times) - min(times) < 86400


def test_header_only_capture_has_no_packets(tmp_path: Path) -> None:
    p = tmp_path / "header.pcap"
    p.write_bytes(pcap_bytes([]))
    assert list(open_capture(str(p))) == []


def test_malformed_packets_are_counted_not_fatal(tmp_path: Path) -> None:
    eth = b"\x00" * 12 + b"\x08\x00"
    bad_ihl = eth + bytes([0x41]) + bytes(19)  # IHL 4 words: impossible
    short_tcp = eth + bytes([0x45, 0, 0, 30]) + bytes(5) + b"\x06" + bytes(10) + bytes(10)
    cut_eth = b"\x00\x01\x02"
    p = tmp_path / "bad.pcap"
    p.write_bytes(pcap_bytes([bad_ihl, short_tcp, cut_eth]))
    result, _events = replay(p)
    assert result.counters.packets == 3
    assert result.counters.malformed == 3


def test_unknown_magic_raises_capture_error(tmp_path: Path) -> None:
    p = tmp_path / "x.pcap"
    p.write_bytes(b"\x00\x01\x02\x03" * 10)
    try:
        open_capture(str(p))
    except CaptureError as e:
        assert "unknown magic" in str(e)
    else:
        raise AssertionError("no error")


def test_split_and_out_of_order_handshakes_are_reassembled() -> None:
    for name in ("rdp-split-handshake.pcap", "rdp-out-of-order.pcap"):
        _r, events = replay(SYNTHETIC / name)
        (v,) = verdicts(events).values()
        ev = v["remote_access"]["evidence"]
        assert ev[0]["detail"] == "mstshash=grandma", name  # needs both segments in order


def test_vlan_ipv6_session() -> None:
    _r, events = replay(SYNTHETIC / "vnc-ipv6-vlan.pcap")
    (v,) = verdicts(events).values()
    assert v["remote_access"]["tool"] == "vnc" and ":" in v["src_ip"]


LINKTYPES = [dec.LINKTYPE_ETHERNET, dec.LINKTYPE_LINUX_SLL, dec.LINKTYPE_LINUX_SLL2,
             dec.LINKTYPE_RAW, dec.LINKTYPE_NULL, dec.LINKTYPE_LOOP, dec.LINKTYPE_IPV4,
             dec.LINKTYPE_IPV6, 147]


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(LINKTYPES), st.binary(max_size=200))
def test_decoder_never_raises(linktype: int, frame: bytes) -> None:
    out = dec.decode_frame(linktype, frame)
    assert isinstance(out, (int, tuple))


def _ipv4_tcp(payload: bytes) -> bytes:
    ip = bytes([0x45, 0]) + struct.pack("!H", 40 + len(payload)) + bytes(4) + bytes([64, 6]) \
        + bytes(2) + bytes([10, 0, 0, 1, 10, 0, 0, 2])
    tcp = struct.pack("!HHIIBBHHH", 1234, 3389, 1, 0, 0x50, 0x18, 1000, 0, 0)
    return ip + tcp + payload


def test_each_link_type_reaches_the_same_payload() -> None:
    ipv4 = _ipv4_tcp(b"hello")
    frames = {
        dec.LINKTYPE_ETHERNET: b"\x00" * 12 + b"\x81\x00\x00\x0a\x08\x00" + ipv4,  # VLAN
        dec.LINKTYPE_LINUX_SLL: bytes(14) + b"\x08\x00" + ipv4,
        dec.LINKTYPE_LINUX_SLL2: b"\x08\x00" + bytes(18) + ipv4,
        dec.LINKTYPE_RAW: ipv4,
        dec.LINKTYPE_NULL: struct.pack("<I", 2) + ipv4,
        dec.LINKTYPE_LOOP: struct.pack("!I", 2) + ipv4,
    }
    for lt, fr in frames.items():
        out = dec.decode_frame(lt, fr)
        assert isinstance(out, tuple), lt
        assert out[7] == b"hello" and out[4] == 3389, lt


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=600))
def test_tls_and_certificate_parsers_never_raise(data: bytes) -> None:
    read_flight(b"\x16\x03\x01" + data)
    certificate_names(data)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_dns_parser_raises_only_its_own_error(data: bytes) -> None:
    try:
        parse_response(b"\x12\x34\x81\x80" + data)
    except DnsError:
        pass


def test_dns_compression_loop_is_refused() -> None:
    msg = b"\x00\x01\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xc0\x0c"
    try:
        parse_response(msg)
    except DnsError as e:
        assert "loop" in str(e)
    else:
        raise AssertionError("no error")


def test_pppoe_session_frames_reach_ip() -> None:
    ipv4 = _ipv4_tcp(b"hi")
    pppoe = b"\x11\x00\x00\x01" + len(ipv4 + b"..").to_bytes(2, "big") + b"\x00\x21"
    frame = b"\x00" * 12 + b"\x81\x00\x00\x0a" + b"\x88\x64" + pppoe + ipv4
    out = dec.decode_frame(dec.LINKTYPE_ETHERNET, frame)
    assert isinstance(out, tuple) and out[7] == b"hi"


def _pcapng_section(bo: str, frames: list[tuple[int, bytes]]) -> bytes:
    """One pcapng section in byte order ``bo``: SHB, an Ethernet IDB (microseconds), an
    unknown block, then an Enhanced Packet Block per (timestamp in µs, frame)."""
    out = struct.pack(bo + "IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
    out += struct.pack(bo + "IIHHII", 1, 20, dec.LINKTYPE_ETHERNET, 0, 65535, 20)
    out += struct.pack(bo + "III", 0x0BAD, 12, 12)  # a block type this reader skips
    for ts, fr in frames:
        pad = -len(fr) % 4
        blen = 32 + len(fr) + pad
        out += struct.pack(bo + "IIIIIII", 6, blen, 0, ts >> 32, ts & 0xFFFFFFFF, len(fr),
                           len(fr)) + fr + bytes(pad) + struct.pack(bo + "I", blen)
    return out


def test_pcapng_larger_than_a_chunk_replays_as_its_classic_twin(tmp_path: Path) -> None:
    # Several read chunks' worth of the demo's packets, in two sections (little-endian,
    # then big-endian), so that blocks straddle chunk ends and a section starts mid-file.
    # The demo's first packets, each padded out (Ethernet trailer) to 4 KiB, keep it short.
    frames = [fr.ljust(4096, b"\0") for _ts, _lt, fr, _w in open_capture(str(DEMO))][:640]
    assert sum(map(len, frames)) >= 2.5 * READ_CHUNK
    half = len(frames) // 2
    stamps = [(1700000000 + i) * 1_000_000 for i in range(len(frames))]
    classic = tmp_path / "twin.pcap"
    classic.write_bytes(pcap_bytes(frames))
    ng = tmp_path / "twin.pcapng"
    ng.write_bytes(_pcapng_section("<", list(zip(stamps[:half], frames[:half], strict=True)))
                   + _pcapng_section(">", list(zip(stamps[half:], frames[half:], strict=True))))
    got = [(ts, fr) for ts, _lt, fr, _w in open_capture(str(ng))]
    assert got == [(float(s // 1_000_000), fr) for s, fr in zip(stamps, frames, strict=True)]
    r1, ev1 = replay(classic)
    r2, ev2 = replay(ng)
    assert r1.counters.packets == r2.counters.packets == len(frames)
    assert r1.counters.bytes == r2.counters.bytes
    assert any(e["event_type"] == "remote_access" for e in ev2)
    strip = [{k: v for k, v in e.items() if k not in ("pcap_filename", "stats")} for e in ev1]
    assert strip == [{k: v for k, v in e.items() if k not in ("pcap_filename", "stats")}
                     for e in ev2]
    # Cut inside a block past the first chunk: the packets before it, and a warning.
    cut = tmp_path / "cut.pcapng"
    data = ng.read_bytes()
    cut.write_bytes(data[:int(1.5 * READ_CHUNK)])
    st_ = ReadStats()
    before = list(open_capture(str(cut), st_))
    assert st_.truncated and st_.truncated_detail == "last block cut short"
    res, _e = replay(cut)
    assert res.counters.packets == len(before) > 0 and res.counters.files_truncated == 1


def test_big_endian_pcap_replays_as_its_little_endian_twin(tmp_path: Path) -> None:
    # The hot loop reads each record's header and the frame's fields in one unpack, in the
    # file's byte order: a file written on a big-endian host must count and detect the same.
    # Its original lengths exceed the captured ones (a snap length), so volumes show it too.
    frames = [(ts, fr) for ts, _lt, fr, _w in open_capture(str(DEMO))]
    files = {}
    for bo in "<>":
        out = struct.pack(bo + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
        for ts, fr in frames:
            sec = int(ts)
            out += struct.pack(bo + "IIII", sec, round((ts - sec) * 1e6), len(fr),
                               len(fr) + 100) + fr
        files[bo] = tmp_path / f"demo-{'le' if bo == '<' else 'be'}.pcap"
        files[bo].write_bytes(out)
    (r1, ev1), (r2, ev2) = replay(files["<"]), replay(files[">"])
    assert r1.counters == r2.counters
    assert r1.counters.bytes == r1.counters.captured_bytes + 100 * len(frames)
    assert any(e["event_type"] == "session" for e in ev2)
    strip = [{k: v for k, v in e.items() if k != "pcap_filename"} for e in ev1]
    assert strip == [{k: v for k, v in e.items() if k != "pcap_filename"} for e in ev2]


def test_frame_fields_read_an_ipv4_frame_in_either_byte_order() -> None:
    from netwatch.pipeline import FrameFields
    frame = bytes(12) + b"\x08\x00" + _ipv4_tcp(b"x")
    for bo in "<>":
        ff = FrameFields(bo + "IIII")
        rec = struct.pack(bo + "IIII", 1, 2, len(frame), len(frame)) + frame
        (_s, _f, incl, _w, eth, vihl, frag, proto, key, _b44,
         flags) = ff.struct.unpack_from(rec.ljust(ff.struct.size, b"\0"))
        assert (eth, vihl, frag & ff.frag, proto) == (ff.ipv4, 0x45, 0, dec.PROTO_TCP)
        assert key == frame[26:38] and flags == frame[47] and incl == len(frame)
        # A later fragment's offset is seen whatever the byte order.
        later = frame[:20] + b"\x00\x10" + frame[22:]
        rec = struct.pack(bo + "IIII", 1, 2, len(later), len(later)) + later
        assert ff.struct.unpack_from(rec.ljust(ff.struct.size, b"\0"))[6] & ff.frag
