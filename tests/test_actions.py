"""Signed action links: form, signature, expiry, single purpose; the per-install secret."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from netwatch.actions import (
    DEFAULT_ALLOW_S,
    MAX_LINK_CHARS,
    SECRET_BYTES,
    ActionRefused,
    links_for_alert,
    load_or_create_secret,
    make_link,
    make_token,
    peek_lang,
    seal,
    token_ref,
    verify,
)

SECRET = bytes(range(32))
OTHER = bytes(range(1, 33))
NOW = 1_709_650_000.0
EXP = int(NOW) + 86400
BASE = "http://netwatch.lan:8787"
URL_SAFE = re.compile(r"[A-Za-z0-9._~:/-]+")


def _link(**kw: object) -> str:
    args: dict[str, object] = dict(action="block", session_id=12, alert_id="12-3",
                                   carer="Sophie", device="Maria's laptop", expires_at=EXP)
    args.update(kw)
    return make_link(SECRET, BASE, **args)  # type: ignore[arg-type]


def _token(url: str) -> str:
    prefix = BASE + "/a/"
    assert url.startswith(prefix)
    return url[len(prefix):]


def _refused(token: str, now: float = NOW, secret: bytes = SECRET) -> ActionRefused:
    with pytest.raises(ActionRefused) as e:
        verify(secret, token, now)
    return e.value


def _swap(text: str, i: int) -> str:
    c = "A" if text[i] != "A" else "B"
    return text[:i] + c + text[i + 1:]


# ------------------------------------------------------------------ round trip


def test_block_link_round_trip() -> None:
    url = _link(nonce="fixed-nonce-0001", lang="nl")
    assert URL_SAFE.fullmatch(url) and len(url) < MAX_LINK_CHARS
    req = verify(SECRET, _token(url), NOW)
    assert (req.action, req.session_id, req.alert_id, req.carer, req.device) == \
        ("block", 12, "12-3", "Sophie", "Maria's laptop")
    assert req.expires_at == EXP and req.nonce == "fixed-nonce-0001" and req.lang == "nl"
    assert req.duration_s is None and req.until(NOW) is None


def test_allow_link_carries_its_duration() -> None:
    req = verify(SECRET, _token(_link(action="allow")), NOW)
    assert req.action == "allow" and req.duration_s == DEFAULT_ALLOW_S == 7200
    assert req.until(NOW) == NOW + 7200
    short = verify(SECRET, _token(_link(action="allow", duration_s=1800)), NOW)
    assert short.duration_s == 1800


def test_names_outside_ascii_and_no_device_round_trip() -> None:
    req = verify(SECRET, _token(_link(carer="Zoë Dubois", device=None)), NOW)
    assert req.carer == "Zoë Dubois" and req.device is None
    req = verify(SECRET, _token(_link(device="Opa's pc — keuken")), NOW)
    assert req.device == "Opa's pc — keuken"


def test_token_is_short_and_url_safe() -> None:
    url = _link(carer="Grandchild", device="Living room PC", action="allow", lang="de")
    token = _token(url)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}", token)
    assert len(token) < 200 and len(url) < MAX_LINK_CHARS


def test_tokens_differ_per_nonce() -> None:
    a, b = _token(_link()), _token(_link())
    assert a != b
    assert verify(SECRET, a, NOW).nonce != verify(SECRET, b, NOW).nonce
    assert _token(_link(nonce="same-nonce-1234")) == _token(_link(nonce="same-nonce-1234"))
    assert _token(_link(nonce="same-nonce-1234")) != _token(_link(nonce="same-nonce-1235"))


def test_make_link_refuses_bad_fields_and_overlong_links() -> None:
    for bad in ({"action": "delete"}, {"session_id": "12"}, {"session_id": True},
                {"alert_id": ""}, {"carer": ""}, {"lang": "es"}, {"nonce": "short"},
                {"action": "allow", "duration_s": 0}):
        with pytest.raises(ValueError):
            _link(**bad)
    with pytest.raises(ValueError, match="characters"):
        _link(carer="C" * 120, device="D" * 120)


# ------------------------------------------------------------------ refusals


def test_every_changed_payload_character_is_tampered() -> None:
    token = _token(_link())
    payload, tag = token.split(".")
    for i in range(len(payload)):
        r = _refused(_swap(payload, i) + "." + tag)
        assert r.reason_code == "tampered" and r.http_status == 403, i


def test_every_changed_tag_character_is_tampered() -> None:
    token = _token(_link())
    payload, tag = token.split(".")
    for i in range(len(tag)):
        assert _refused(payload + "." + _swap(tag, i)).reason_code == "tampered", i


def test_another_secret_is_tampered() -> None:
    r = _refused(_token(_link()), secret=OTHER)
    assert r.reason_code == "tampered" and r.request is None


def test_expiry_boundary() -> None:
    token = _token(_link())
    assert verify(SECRET, token, EXP - 0.001).session_id == 12
    r = _refused(token, now=EXP)
    assert r.reason_code == "expired" and r.http_status == 410 and r.expires_at == EXP
    assert r.request is not None and r.request.carer == "Sophie"
    assert _refused(token, now=EXP + 3600).reason_code == "expired"


@pytest.mark.parametrize("bad", [
    "", "x", "not-a-token", "abc$%^.def", "a+b/c==.QUJDREVGR0hJSktMTU5PUFFSUw",
    "only-one-part-without-any-dot-at-all",
])
def test_malformed_tokens(bad: str) -> None:
    r = _refused(bad)
    assert r.reason_code == "malformed" and r.http_status == 400


def test_malformed_base64_and_cut_links() -> None:
    token = _token(_link())
    payload, tag = token.split(".")
    assert _refused(token[:-1]).reason_code == "malformed"  # cut short (SMS)
    assert _refused(payload + ".").reason_code == "malformed"
    assert _refused(payload + "=." + tag).reason_code == "malformed"  # padding not allowed
    assert _refused(payload + "!" + "." + tag).reason_code == "malformed"
    assert _refused(token + ".x").reason_code == "malformed"
    assert _refused("A" * 600 + "." + tag).reason_code == "malformed"  # too long to look at


def test_changed_action_field_is_tampered() -> None:
    token = _token(_link(action="block"))
    payload, tag = token.split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    fields = json.loads(raw)
    assert fields[1] == "b"
    fields[1], fields[8] = "a", 7200  # turn the block link into an allow link
    forged = base64.urlsafe_b64encode(
        json.dumps(fields, separators=(",", ":")).encode()).rstrip(b"=").decode()
    assert _refused(forged + "." + tag).reason_code == "tampered"


def _fields(**over: object) -> list[object]:
    f: list[object] = [1, "b", 12, "12-3", "Sophie", "Maria's laptop", EXP,
                       "fixed-nonce-0001", 0, "en"]
    names = ["v", "code", "session", "alert", "carer", "device", "exp", "nonce", "dur", "lang"]
    for k, v in over.items():
        f[names.index(k)] = v
    return f


def test_genuinely_signed_but_wrong_fields_are_malformed() -> None:
    assert verify(SECRET, seal(SECRET, _fields()), NOW).action == "block"
    for over in ({"code": "x"}, {"code": "block"}, {"code": None}, {"v": 2},
                 {"session": "12"}, {"session": -1}, {"alert": ""}, {"carer": 7},
                 {"exp": "tomorrow"}, {"exp": 1.5}, {"nonce": "?"}, {"dur": 60},
                 {"lang": "es"}, {"device": 3}):
        r = _refused(seal(SECRET, _fields(**over)))
        assert r.reason_code == "malformed", over
    assert _refused(seal(SECRET, _fields(code="a", dur=0))).reason_code == "malformed"
    assert _refused(seal(SECRET, _fields()[:9])).reason_code == "malformed"
    assert _refused(seal(SECRET, [])).reason_code == "malformed"
    assert _refused(seal(SECRET, {"v": 1})).reason_code == "malformed"  # type: ignore[arg-type]


def test_refusal_message_never_contains_the_token() -> None:
    token = _token(_link())
    for t in (token, _swap(token, 3), token[:-2]):
        r = _refused(t, now=EXP + 1)
        assert token not in str(r) and t not in r.message


def test_make_token_matches_make_link() -> None:
    kw: dict[str, Any] = dict(action="block", session_id=1, alert_id="1-1", carer="A",
                              device=None, expires_at=EXP, nonce="fixed-nonce-0001")
    assert make_link(SECRET, BASE + "/", **kw).endswith("/a/" + make_token(SECRET, **kw))
    assert len(token_ref(make_token(SECRET, **kw))) == 10


def test_peek_lang() -> None:
    assert peek_lang(_token(_link(lang="fr"))) == "fr"
    assert peek_lang(_token(_link())) is None
    assert peek_lang("garbage") is None


# ------------------------------------------------------------------ wiring


def test_links_for_alert() -> None:
    alert = {"id": "7-2", "level": "critical", "title": "AnyDesk is controlling Maria's PC",
             "reasons": ["x"], "session_id": 7, "device": "Maria's PC",
             "actions": ["block", "allow"]}
    links = links_for_alert(SECRET, BASE, alert, "Sophie", NOW, lang="nl")
    assert [k for k, _ in links] == ["block", "allow"]
    reqs = {k: verify(SECRET, _token(u), NOW) for k, u in links}
    assert reqs["block"].action == "block" and reqs["allow"].duration_s == 7200
    for r in reqs.values():
        assert (r.session_id, r.alert_id, r.carer, r.device, r.lang) == \
            (7, "7-2", "Sophie", "Maria's PC", "nl")
        assert r.expires_at == int(NOW + 86400)
    assert reqs["block"].nonce != reqs["allow"].nonce

    short = links_for_alert(SECRET, BASE, alert, "Sophie", NOW, ttl_s=600)
    assert verify(SECRET, _token(short[0][1]), NOW).expires_at == int(NOW + 600)
    assert links_for_alert(SECRET, BASE, {**alert, "actions": []}, "S", NOW) == []
    only = links_for_alert(SECRET, BASE, {**alert, "actions": ["allow", "ring"]}, "S", NOW)
    assert [k for k, _ in only] == ["allow"]
    nodev = {k: v for k, v in alert.items() if k != "device"}
    assert verify(SECRET, _token(links_for_alert(SECRET, BASE, nodev, "S", NOW)[0][1]),
                  NOW).device is None


# ------------------------------------------------------------------ the secret


def test_secret_file_created_once_with_mode_0600(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key = load_or_create_secret(state)
    path = state / "signing.key"
    assert len(key) == SECRET_BYTES and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ino = path.stat().st_ino
    assert load_or_create_secret(state) == key
    assert path.stat().st_ino == ino  # reused, not rewritten
    assert sorted(p.name for p in state.iterdir()) == ["signing.key"]  # no temporary left
    assert load_or_create_secret(tmp_path / "other") != key


def test_secret_file_readable_by_others_is_tightened(tmp_path: Path) -> None:
    key = load_or_create_secret(tmp_path)
    os.chmod(tmp_path / "signing.key", 0o644)
    assert load_or_create_secret(tmp_path) == key
    assert stat.S_IMODE((tmp_path / "signing.key").stat().st_mode) == 0o600


def test_damaged_secret_file_is_an_error_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "signing.key").write_bytes(b"short")
    with pytest.raises(ValueError, match="damaged"):
        load_or_create_secret(tmp_path)
    assert (tmp_path / "signing.key").read_bytes() == b"short"


def test_secret_created_concurrently_is_one_key(tmp_path: Path) -> None:
    keys: list[bytes] = []
    barrier = threading.Barrier(8)

    def go() -> None:
        barrier.wait(5)
        keys.append(load_or_create_secret(tmp_path))

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(keys) == 8 and len(set(keys)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signing.key"]
