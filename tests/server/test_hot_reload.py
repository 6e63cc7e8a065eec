"""Hot reload of rules under load: no failed call, and every reply names the rule set that scored it."""

from __future__ import annotations

import sys
import threading
from typing import Any

import grpc
import pytest
from outpost.v1 import outpost_pb2 as pb

from rules_engine import RuleSet
from server._settings import PACKAGE_ROOT
from tests.server.conftest import RunningServer, txn

pytestmark = pytest.mark.slow

_MARKER_RULE = """
  - id: R_TEST_RELOAD_MARKER
    description: {zh-CN: 重载测试标记, en: reload test marker}
    typology: velocity
    when: amount_cny > 0
    score: 1
    mode: active
    reason: {zh-CN: 标记, en: marker}
"""


def _variant_b(text: str) -> str:
    """The shipped pack with another version and one extra rule (1 point) that hits every transaction."""
    head, sep, rules = text.partition("rules:\n")
    assert sep, "the pack has a top-level 'rules:' list"
    head = head.replace('version: "', 'version: "reload-b-', 1)
    return head + sep + _MARKER_RULE.lstrip("\n") + rules


def test_hundred_reloads_under_load_fail_no_call(server_factory: type[RunningServer]) -> None:
    """100 reloads alternating two rule sets while a client scores: zero errors, versions match the rules hit."""
    server = server_factory()  # type: ignore[call-arg]
    text_a = (PACKAGE_ROOT / "rules_engine" / "packs" / "default.yaml").read_text(encoding="utf-8")
    text_b = _variant_b(text_a)
    first = server.admin.ReloadRules(pb.ReloadRulesRequest(rules_yaml=text_b, source_name="b.yaml"))
    assert first.ok, list(first.errors)
    version_b = first.ruleset_version
    back = server.admin.ReloadRules(pb.ReloadRulesRequest(rules_yaml=text_a, source_name="a.yaml"))
    version_a = back.ruleset_version
    assert back.ok and version_a != version_b

    replies: list[pb.ScoreResponse] = []
    errors: list[grpc.RpcError] = []
    stop = threading.Event()

    def client() -> None:
        stub = server.scoring
        k = 0
        while not stop.is_set():
            try:
                replies.append(stub.Score(txn(f"acct-reload-{k % 20}", explain=True), timeout=10))
            except grpc.RpcError as err:
                errors.append(err)
            k += 1

    worker = threading.Thread(target=client)
    worker.start()
    try:
        for i in range(100):
            text, name = (text_b, "b.yaml") if i % 2 == 0 else (text_a, "a.yaml")
            reply = server.admin.ReloadRules(pb.ReloadRulesRequest(rules_yaml=text, source_name=name))
            assert reply.ok, list(reply.errors)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not errors, [e.code() for e in errors[:5]]
    assert len(replies) > 100
    versions = {r.ruleset_version for r in replies}
    assert versions <= {version_a, version_b}
    assert versions == {version_a, version_b}, "the client should have seen both rule sets"
    for reply in replies:
        marked = "R_TEST_RELOAD_MARKER" in reply.rule_hits
        assert marked == (reply.ruleset_version == version_b), "the reply's version must be the set that scored it"


def test_a_reload_hands_the_gil_back_sooner_and_restores_the_interval(
    server_factory: type[RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rules of a reload are compiled with a 0.2 ms switch interval; after a good and a bad reload the
    interpreter's own interval is back."""
    server = server_factory()  # type: ignore[call-arg]
    seen: list[float] = []
    compile_rules = RuleSet.compile

    def spy(text: str, **kwargs: Any) -> RuleSet:
        seen.append(sys.getswitchinterval())
        return compile_rules(text, **kwargs)

    monkeypatch.setattr(RuleSet, "compile", spy)
    before = sys.getswitchinterval()
    text = (PACKAGE_ROOT / "rules_engine" / "packs" / "default.yaml").read_text(encoding="utf-8")
    assert server.admin.ReloadRules(pb.ReloadRulesRequest(rules_yaml=_variant_b(text), source_name="b.yaml")).ok
    bad = server.admin.ReloadRules(pb.ReloadRulesRequest(rules_yaml=text + "\n  - id: [", source_name="bad.yaml"))
    assert not bad.ok
    assert seen and all(interval == pytest.approx(0.0002) for interval in seen)
    assert sys.getswitchinterval() == before
