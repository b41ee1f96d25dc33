"""The blocking layer without a network: safety rules, state, events, reconcile, the policy's
decisions and the pipeline acting on them (dry-run backend; the live tests are in
test_block_live.py)."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conftest import signatures
from netwatch.actions import ActionRequest
from netwatch.block import BlockLayer
from netwatch.block.dryrun import DryRunBackend
from netwatch.block.layer import BackendError
from netwatch.block.nftables import NftablesBackend
from netwatch.block.safety import MAX_PEERS, from_system, system_resolvers
from netwatch.eventlog import EventLog, iso_timestamp
from netwatch.household import HouseholdError, load_household
from netwatch.pipeline import Pipeline
from netwatch.policy import decide
from netwatch.sources.capture import ReadStats

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = jsonschema.Draft202012Validator(json.loads(
    (ROOT / "netwatch" / "schema" / "eve.schema.json").read_text()))
DEMO = ROOT / "tests" / "pcaps" / "synthetic" / "demo-anydesk-scam.pcap"
T0 = 1_800_000_000.0
DEVICE, PEER, ROUTER, RESOLVER, BOX = "192.168.1.23", "203.0.113.7", "192.168.1.1", \
    "192.168.1.1", "192.168.1.2"

HOUSEHOLD = """
timezone: Europe/Brussels
people:
  Maria: nl
  Pieter: nl
carers:
  - name: Pieter
    language: nl
devices:
  - name: laptop
    person: Maria
    ips: [192.168.1.23]
    policy: {policy}
  - name: phone
    person: Pieter
    ips: [192.168.1.40]
help_windows:
  - name: Sunday help
    days: [sun]
    start: "10:00"
    end: "12:00"
never_block:
  - 198.51.100.0/24
  - peer: 192.0.2.9
    note: the office
"""


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def household(tmp_path: Path, policy: str = "alert") -> Any:
    p = tmp_path / "household.yaml"
    p.write_text(textwrap.dedent(HOUSEHOLD).format(policy=policy))
    return load_household(str(p), known_tools=["anydesk", "vnc", "rdp", "teamviewer"])


def layer(tmp_path: Path, h: Any = None, backend: Any = None,
          clock: Clock | None = None) -> BlockLayer:
    clock = clock or Clock()
    safety = from_system(h, box=[BOX], routers=[ROUTER], resolvers=[RESOLVER])
    return BlockLayer(tmp_path / "state", backend or DryRunBackend(clock), household=h,
                      safety=safety, clock=clock)


def valid(ev: dict[str, Any]) -> dict[str, Any]:
    errors = [e.message for e in SCHEMA.iter_errors(ev)]
    assert errors == [], (ev, errors)
    return ev


# ------------------------------------------------------------------ safety


@pytest.mark.parametrize("peer, why", [
    (ROUTER, "router"), (BOX, "this box's own address"), ("127.0.0.1", "loopback"),
    ("198.51.100.77", "never_block"), ("192.0.2.9", "the office"),
    ("192.168.1.40", "carer Pieter's device"),
])
def test_the_safety_rules_refuse_a_protected_peer(tmp_path: Path, peer: str, why: str) -> None:
    lay = layer(tmp_path, household(tmp_path))
    ev = valid(lay.add(device="laptop", peers=[peer], reason="test"))
    assert ev["block"]["action"] == "refused" and why in ev["block"]["reason"]
    assert lay.list_blocks() == [] and lay.backend.elements() == set()


def test_a_carers_device_is_never_the_blocked_device(tmp_path: Path) -> None:
    lay = layer(tmp_path, household(tmp_path))
    ev = lay.add(device="phone", peers=[PEER], reason="test")
    assert ev["block"]["action"] == "refused" and "a carer's device" in ev["block"]["reason"]


def test_one_rule_holds_at_most_the_cap_of_peers(tmp_path: Path) -> None:
    lay = layer(tmp_path)
    peers = [f"203.0.113.{i}" for i in range(1, MAX_PEERS + 2)]
    ev = lay.add(device=None, ip=DEVICE, peers=peers, reason="test")
    assert ev["block"]["action"] == "refused" and "more than" in ev["block"]["reason"]
    assert lay.add(device=None, ip=DEVICE, peers=peers[:MAX_PEERS],
                   reason="test")["block"]["action"] == "add"


def test_resolvers_are_read_from_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch lan\nnameserver 192.168.1.1\nnameserver fd00::1\n")
    assert system_resolvers([str(conf), str(tmp_path / "missing")]) == ["192.168.1.1",
                                                                         "fd00::1"]


# ------------------------------------------------------------------ never_block in the file


def test_never_block_entries_are_checked_with_their_lines(tmp_path: Path) -> None:
    p = tmp_path / "h.yaml"
    p.write_text("people:\n  Maria: nl\nnever_block:\n  - 10.0.0.300\n  - device: nothere\n"
                 "  - {peer: 192.0.2.1, device: x}\n")
    with pytest.raises(HouseholdError) as e:
        load_household(str(p), known_tools=[])
    text = "\n".join(e.value.problems)
    assert f"{p}:4: never_block[0]: '10.0.0.300' is not an IP address or network" in text
    assert f"{p}:5: never_block[1].device: 'nothere' is not one of the devices" in text
    assert f"{p}:6: never_block[2]: give either a peer" in text


def test_the_example_household_file_has_a_never_block_list() -> None:
    h = load_household(str(ROOT / "deploy" / "household.example.yaml"))
    assert [str(n.network) for n in h.never_block] == ["192.168.1.2/32"]


# ------------------------------------------------------------------ the layer


def test_a_block_is_written_before_the_backend_acts(tmp_path: Path) -> None:
    seen: list[Any] = []

    class Watching(DryRunBackend):
        def add(self, pairs: Any, timeout_s: float) -> None:
            seen.append(json.loads((tmp_path / "state" / "blocks.json").read_text()))
            super().add(pairs, timeout_s)

    lay = layer(tmp_path, backend=Watching())
    ev = valid(lay.add(device=None, ip=DEVICE, peers=[PEER], duration_s=60, reason="test"))
    assert ev["block"]["action"] == "add"
    assert [b["id"] for b in seen[0]["blocks"]] == [ev["block"]["id"]]
    assert lay.backend.elements() == {(DEVICE, PEER)}


def test_a_failed_backend_call_is_reported_and_not_kept(tmp_path: Path) -> None:
    class Broken(DryRunBackend):
        def add(self, pairs: Any, timeout_s: float) -> None:
            raise BackendError("nft: Operation not permitted")

    lay = layer(tmp_path, backend=Broken())
    ev = valid(lay.add(device=None, ip=DEVICE, peers=[PEER], reason="Block now"))
    assert ev["block"]["action"] == "failed"
    assert "Operation not permitted" in ev["block"]["reason"]
    assert lay.list_blocks() == []


def test_remove_and_expire(tmp_path: Path) -> None:
    clock = Clock()
    lay = layer(tmp_path, clock=clock)
    a = lay.add(device=None, ip=DEVICE, peers=[PEER], duration_s=3, reason="short")
    b = lay.add(device=None, ip=DEVICE, peers=["203.0.113.8"], duration_s=60, reason="long")
    gone = valid(lay.remove(b["block"]["id"]) or {})
    assert gone["block"]["action"] == "remove"
    assert lay.backend.elements() == {(DEVICE, PEER)}
    assert lay.remove("blk-none") is None
    clock.t += 4
    assert [e["block"]["id"] for e in lay.expire()] == [a["block"]["id"]]
    assert lay.list_blocks() == [] and lay.backend.elements() == set()


def test_reconcile_puts_back_blocks_in_force_and_removes_stale_ones(tmp_path: Path) -> None:
    clock = Clock()
    first = layer(tmp_path, clock=clock)
    keep = first.add(device=None, ip=DEVICE, peers=[PEER], duration_s=600, reason="keep")
    first.add(device=None, ip=DEVICE, peers=["203.0.113.8"], duration_s=5, reason="short")
    clock.t += 10
    # A restart after a reboot: the kernel's sets are empty but for something stale.
    fresh = DryRunBackend(clock)
    fresh.add([(DEVICE, "203.0.113.99")], 600)
    again = layer(tmp_path, backend=fresh, clock=clock)
    events = [valid(e) for e in again.reconcile()]
    assert sorted(e["block"]["action"] for e in events) == ["add", "expire"]
    assert fresh.elements() == {(DEVICE, PEER)}
    assert [b.id for b in again.list_blocks()] == [keep["block"]["id"]]
    assert fresh.pairs[(DEVICE, PEER)] == pytest.approx(T0 + 600)  # the time it had left


def test_a_tool_block_grows_with_the_addresses_netwatch_sees(tmp_path: Path) -> None:
    lay = layer(tmp_path)
    lay.observe_name("anydesk", "203.0.113.50", T0)
    ev = lay.add(device=None, ip=DEVICE, tool="anydesk", reason="test")
    assert ev["block"]["peers"] == ["203.0.113.50"]
    grown = lay.observe_name("anydesk", "203.0.113.51", T0 + 1)
    assert [valid(e)["block"]["action"] for e in grown] == ["add"]
    assert lay.observe_name("teamviewer", "203.0.113.60", T0 + 1) == []
    assert lay.observe_name("anydesk", ROUTER, T0 + 1) == []  # never a protected address
    assert lay.backend.elements() == {(DEVICE, "203.0.113.50"), (DEVICE, "203.0.113.51")}


def _request(action: str, session_id: int = 7) -> ActionRequest:
    return ActionRequest(action=action, session_id=session_id, alert_id=f"{session_id}-1",
                         carer="Pieter", device=None, expires_at=int(T0) + 3600,
                         nonce="n0nce-abcdefgh", duration_s=7200 if action == "allow" else None)


def test_block_now_and_allow_through_the_control_protocol(tmp_path: Path) -> None:
    lay = layer(tmp_path)
    lay.remember_session({"event_type": "session", "src_ip": DEVICE,
                          "session": {"id": 7, "tool": "vnc", "peers": [PEER, "vnc.example"]}})
    ev = valid(lay.block(_request("block")))
    assert ev["block"]["action"] == "add" and ev["block"]["peers"] == [PEER]
    assert ev["block"]["id"].startswith("ctl-")
    out = valid(lay.allow(_request("allow"), T0 + 7200))
    assert out["block"]["action"] == "remove" and out["block"]["allowed_until"]
    assert lay.backend.elements() == set()
    assert lay.allowed_until(7, T0) == T0 + 7200
    # The policy may not block the allowed session again meanwhile.
    again = lay.add(device=None, ip=DEVICE, peers=[PEER], session_id=7, source="policy",
                    reason="policy")
    assert again["block"]["action"] == "refused"


def test_block_now_for_a_session_netwatch_never_saw_is_refused(tmp_path: Path) -> None:
    ev = valid(layer(tmp_path).block(_request("block", 99)))
    assert ev["block"]["action"] == "refused"


# ------------------------------------------------------------------ the policy decides


def _session(sid: int, state: str, when: datetime) -> dict[str, Any]:
    ts = iso_timestamp(when.timestamp())
    return {"timestamp": ts, "event_type": "session", "src_ip": DEVICE,
            "session": {"id": sid, "tool": "vnc", "state": state, "started": ts,
                        "duration_s": 10.0, "peers": [PEER, "vnc.example"]}}


MONDAY = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
SUNDAY = datetime(2026, 12, 6, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize("policy, when, blocks", [
    ("block", MONDAY, True), ("block", SUNDAY, True),
    ("block-outside-windows", MONDAY, True), ("block-outside-windows", SUNDAY, False),
    ("alert", MONDAY, False),
])
def test_the_policy_decides_to_block(tmp_path: Path, policy: str, when: datetime,
                                     blocks: bool) -> None:
    alerts = decide([_session(1, "active", when)], household(tmp_path, policy), when)
    alert = alerts[0]["alert"]
    assert ("block" in alert) == blocks
    if blocks:
        assert alert["block"]["peers"] == [PEER] and alert["actions"] == ["allow"]
        assert alert["reason_codes"][-1]["code"].startswith("blocking")
        assert "netwatch is blocking it" in alert["reasons"][-1]
        valid(alerts[0])


def test_an_allowed_session_is_not_blocked_again_until_the_allow_ends(tmp_path: Path) -> None:
    h = household(tmp_path, "block")
    allow = {"timestamp": iso_timestamp(MONDAY.timestamp()), "event_type": "block",
             "block": {"id": "ctl-1", "action": "remove", "target": "laptop", "peers": [],
                       "expires": None, "reason": "allowed", "session_id": 1,
                       "allowed_until": datetime(2026, 12, 7, 16, 0, tzinfo=UTC).isoformat()}}
    first = _session(1, "active", MONDAY)
    later = _session(1, "active", datetime(2026, 12, 7, 14, 15, tzinfo=UTC))
    after = _session(1, "active", datetime(2026, 12, 7, 16, 30, tzinfo=UTC))
    alerts = decide([first, allow, later, after], h, datetime(2026, 12, 7, 17, 0, tzinfo=UTC))
    decided = [a["alert"].get("block") is not None for a in alerts]
    assert len(decided) == 3
    assert decided[0] is True and decided[-1] is True and not any(decided[1:-1])


# ------------------------------------------------------------------ the pipeline acts


def test_the_pipeline_blocks_and_the_alert_says_how_it_went(tmp_path: Path) -> None:
    text = (ROOT / "deploy" / "household.example.yaml").read_text()
    path = tmp_path / "household.yaml"
    path.write_text(text.replace("    policy: alert", "    policy: block"))
    h = load_household(str(path))
    log_path = tmp_path / "eve.json"
    log = EventLog(str(log_path))
    pipe = Pipeline(signatures(), log, household=h)
    pipe.blocker = layer(tmp_path, h)
    pipe.feed_file(str(DEMO), ReadStats())
    pipe.finish()
    log.close()
    events = [json.loads(ln) for ln in log_path.read_text().splitlines()]
    blocks = [e for e in events if e["event_type"] == "block"]
    decided = [e for e in events if e["event_type"] == "alert" and "block" in e["alert"]]
    assert len(decided) == 1 and decided[0]["alert"]["block"]["outcome"] == "dry-run"
    assert "nothing was cut" in decided[0]["alert"]["reasons"][-1]
    assert [b["block"]["action"] for b in blocks][0] == "add"
    assert events.index(blocks[0]) < events.index(decided[0])  # acted on before it is sent
    for e in blocks + decided:
        valid(e)


# ------------------------------------------------------------------ nftables commands


def test_the_nftables_backend_never_flushes_or_deletes_a_table(monkeypatch: Any) -> None:
    sent: list[dict[str, Any]] = []
    b = NftablesBackend()
    monkeypatch.setattr(b, "apply", lambda cmds: sent.extend(cmds))
    monkeypatch.setattr(b, "elements", lambda *_: {(DEVICE, PEER)})
    b.install()
    b.add([(DEVICE, PEER), (DEVICE, "203.0.113.8"), ("fd00::23", "2001:db8::7")], 7.2)
    verbs = {(v, k) for c in sent for v, body in c.items() for k in body}
    assert ("add", "table") in verbs
    assert not {("flush", "table"), ("delete", "table"), ("flush", "ruleset")} & verbs
    flushed = {c["flush"]["chain"]["name"] for c in sent if "flush" in c}
    assert flushed == {"block_rules", "block_forward", "block_input", "block_output"}
    elements = [c for c in sent if "element" in c.get("add", {})]
    timeouts = {e["elem"]["timeout"] for c in elements for e in c["add"]["element"]["elem"]}
    assert timeouts == {8}  # whole seconds, rounded up
    deleted = [c["delete"]["element"]["elem"] for c in sent if "delete" in c]
    assert deleted == [[{"concat": [DEVICE, PEER]}]]  # re-added with its new timeout


def test_a_failed_block_decided_by_the_policy_is_in_its_alert(tmp_path: Path) -> None:
    class Broken(DryRunBackend):
        def add(self, pairs: Any, timeout_s: float) -> None:
            raise BackendError("nft: Operation not permitted")

    h = household(tmp_path, "block")
    alert = decide([_session(1, "active", MONDAY)], h, MONDAY)[0]
    events = layer(tmp_path, h, backend=Broken()).act_on_alert(alert, T0)
    assert [e["block"]["action"] for e in events] == ["failed"]
    assert alert["alert"]["block"]["outcome"] == "failed"
    assert alert["alert"]["reasons"][-1].startswith("Blocking FAILED")
    valid(alert)


def test_a_device_is_blocked_at_the_addresses_its_dhcp_leases_give(tmp_path: Path) -> None:
    leases = tmp_path / "dhcp.leases"
    leases.write_text("1800000000 3c:22:fb:11:22:33 192.168.1.77 maria-pc *\n"
                      "1800000000 aa:bb:cc:dd:ee:ff 192.168.1.78 other *\n")
    p = tmp_path / "h.yaml"
    p.write_text("people:\n  Maria: nl\ndevices:\n  - name: pc\n    person: Maria\n"
                 "    macs: [3c:22:fb:11:22:33]\ndhcp_leases: dhcp.leases\n")
    h = load_household(str(p), known_tools=[])
    ev = layer(tmp_path, h).add(device="pc", peers=[PEER], reason="test")
    assert ev["block"]["action"] == "add"
    assert layer(tmp_path, h).backend.elements() == set()  # a new layer: a new dry run
    assert layer(tmp_path, h).list_blocks()[0].addresses == ["192.168.1.77"]


def test_a_session_a_carer_allowed_elsewhere_is_not_blocked_and_its_alert_says_nothing_of_it(
        tmp_path: Path) -> None:
    h = household(tmp_path, "block")
    lay = layer(tmp_path, h)
    lay.allow(_request("allow", 1), T0 + 7200)  # the control endpoint's process
    alert = decide([_session(1, "active", MONDAY)], h, MONDAY)[0]
    assert lay.act_on_alert(alert, T0) == []
    assert "block" not in alert["alert"] and alert["alert"]["actions"] == ["block"]
    assert not any("blocking" in r for r in alert["alert"]["reasons"])
    assert len(alert["alert"]["reasons"]) == len(alert["alert"]["reason_codes"])
    valid(alert)


def test_the_pipeline_adds_a_tools_new_relay_to_its_block(tmp_path: Path) -> None:
    """A DNS answer for an AnyDesk relay name, seen while AnyDesk is blocked on the device,
    puts the relay's address into the block: the program cannot reconnect there."""
    from scenarios import dns_answer, tls_client_hello, write_pcap

    when = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    pcap = write_pcap(tmp_path / "relays.pcap", [
        dns_answer(when, DEVICE, ROUTER, "relay-0a1b2c3d.net.anydesk.com", "203.0.113.80"),
        tls_client_hello(when, DEVICE, "203.0.113.81", "relay-9f8e7d6c.net.anydesk.com"),
        dns_answer(when, DEVICE, ROUTER, "www.example.org", "203.0.113.90", txid=7),
    ])
    lay = layer(tmp_path)
    lay.add(device=None, ip=DEVICE, tool="anydesk", reason="test", now=when.timestamp())
    log_path = tmp_path / "eve.json"
    log = EventLog(str(log_path))
    pipe = Pipeline(signatures(), log)
    pipe.blocker = lay
    pipe.feed_file(str(pcap), ReadStats())
    pipe.finish()
    log.close()
    assert lay.list_blocks(when.timestamp())[0].peers == ["203.0.113.80", "203.0.113.81"]
    events = [json.loads(ln) for ln in log_path.read_text().splitlines()]
    grown = [e for e in events if e["event_type"] == "block"]
    assert [valid(e)["block"]["action"] for e in grown] == ["add", "add"]
