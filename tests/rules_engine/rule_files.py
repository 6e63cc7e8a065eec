"""Rule-file text builders and paths shared by the rule-engine tests."""

from __future__ import annotations

from pathlib import Path

PACK = Path(__file__).resolve().parents[2] / "rules_engine" / "packs" / "default.yaml"
PACK_CASES = PACK.with_name("default_cases.yaml")


def rule_yaml(
    when: str,
    *,
    rule_id: str = "R_TEST",
    extra: str = "",
    reason_zh: str = "原因",
    reason_en: str = "reason",
) -> str:
    """A one-rule file around ``when`` (a folded block scalar, so any expression text fits)."""
    indented = "\n".join("      " + line for line in when.splitlines())
    return (
        'version: "1.0"\n'
        "rules:\n"
        f"  - id: {rule_id}\n"
        "    description: {zh-CN: 测试, en: test}\n"
        "    typology: velocity\n"
        "    score: 100\n"
        f"    reason: {{zh-CN: \"{reason_zh}\", en: \"{reason_en}\"}}\n"
        f"{extra}"
        "    when: >-\n"
        f"{indented}\n"
    )
