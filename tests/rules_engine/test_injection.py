"""Rule text is parsed, never executed: Python-injection attempts are rejected before code generation."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rules_engine import RuleCompileError, RuleSet
from tests.rules_engine.rule_files import rule_yaml

ATTEMPTS = [
    ("__import__('os') == 0", "unknown function '__import__'"),
    ("__import__('os').system('touch /tmp/pwned') == 0", "attribute access is not part of the rule language"),
    ("eval('1') > 0", "unknown function 'eval'"),
    ("exec('import os') > 0", "unknown function 'exec'"),
    ("open('/etc/passwd') > 0", "unknown function 'open'"),
    ("getattr(amount_cny, 'real') > 0", "unknown function 'getattr'"),
    ("amount_cny.__class__ > 0", "attribute access is not part of the rule language"),
    ("().__class__.__bases__ > 0", "attribute access is not part of the rule language"),
    ("() > 0", "expected a value"),
    ("amount_cny > 0; import os", "';' is not part of the rule language"),
    ("lambda: 1", "':' is not part of the rule language"),
    ("[c for c in ()] > 0", "a list can only follow 'in'"),
    ("amount_cny > 0 # comment", "comments are not allowed"),
    ("__builtins__ > 0", "unknown feature '__builtins__'"),
    ("features[0, 0] > 0", "indexing is not part of the rule language"),
    ("hits > 0", "unknown feature 'hits'"),
    ("c0 > 0", "unknown feature 'c0'"),
    ("math > 0", "unknown feature 'math'"),
    ("'\\x41' == channel", "strings cannot contain backslashes"),
]


@pytest.mark.parametrize(("when", "fragment"), ATTEMPTS)
def test_injection_attempts_in_conditions_are_rejected(
    when: str, fragment: str, compile_rules: Callable[[str], RuleSet]
) -> None:
    """Each attempt is a compile error naming what is not allowed; nothing reaches numba."""
    with pytest.raises(RuleCompileError) as caught:
        compile_rules(rule_yaml(when))
    assert any(fragment in e.message for e in caught.value.errors), caught.value.errors


@pytest.mark.parametrize(
    ("rule_id", "fragment"),
    [
        ('"R_A\\nimport os"', "a rule id is 2-64 capital letters"),
        ('"R_A; import os"', "a rule id is 2-64 capital letters"),
        ("r_lower", "a rule id is 2-64 capital letters"),
    ],
)
def test_rule_ids_are_restricted(rule_id: str, fragment: str, compile_rules: Callable[[str], RuleSet]) -> None:
    """Rule ids are plain capital identifiers."""
    with pytest.raises(RuleCompileError) as caught:
        compile_rules(rule_yaml("is_night", rule_id=rule_id))
    assert any(fragment in e.message for e in caught.value.errors)


def test_python_yaml_tags_are_refused(compile_rules: Callable[[str], RuleSet]) -> None:
    """'!!python/...' tags are reported, never constructed."""
    text = rule_yaml("is_night").replace("score: 100", "score: !!python/object/apply:os.system ['true']")
    with pytest.raises(RuleCompileError) as caught:
        compile_rules(text)
    assert "YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed" in str(caught.value)


def test_template_placeholders_cannot_reach_attributes(compile_rules: Callable[[str], RuleSet]) -> None:
    """'{amount_cny.__class__}' and '{amount_cny!r}' are template errors, not attribute lookups."""
    for template in ("{amount_cny.__class__.__mro__}", "{amount_cny!r}", "{amount_cny[0]}"):
        with pytest.raises(RuleCompileError, match="a placeholder must be a feature name"):
            compile_rules(rule_yaml("is_night", reason_en=template))
