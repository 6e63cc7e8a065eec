"""Rule files: structure errors, positions (file:line:col), and whole-file rejection."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from rules_engine import RuleCompileError, RuleDiagnostic
from rules_engine._checks import SymbolTable
from rules_engine._rulefile import RuleFile, read_rule_file
from rules_engine._yaml import MappingNode, Node, SequenceNode, YamlSource
from tests.rules_engine.rule_files import PACK, rule_yaml

SYMBOLS = SymbolTable.from_catalogue()

GOOD_RULE = """\
  - id: R_GOOD
    description: {zh-CN: 好规则, en: good rule}
    typology: structuring
    when: is_just_under_threshold and under_threshold_count_7d >= 2
    score: 400
    action_floor: REVIEW
    channels: [TELLER, ATM]
    mode: shadow
    reason: {zh-CN: "7天内{under_threshold_count_7d}笔", en: "{under_threshold_count_7d} in 7 days"}
    guidance: {zh-CN: 请核实, en: Please check}
"""


def read(text: str) -> RuleFile:
    return read_rule_file(text, source="rules.yaml", symbols=SYMBOLS)


def errors_of(text: str) -> list[RuleDiagnostic]:
    with pytest.raises(RuleCompileError) as caught:
        read(text)
    return caught.value.errors


def test_a_valid_rule_is_read_with_every_field() -> None:
    """All fields land in the Rule with their numeric codes."""
    rule = read('version: "3"\nrules:\n' + GOOD_RULE).rules[0].rule
    assert (rule.id, rule.typology, rule.score, rule.action_floor, rule.mode) == (
        "R_GOOD", "structuring", 400.0, 2, "shadow"
    )
    assert rule.channels == frozenset({3, 4})
    assert (rule.description_zh, rule.description_en) == ("好规则", "good rule")
    assert rule.guidance_en == "Please check"
    assert rule.when == "is_just_under_threshold and under_threshold_count_7d >= 2"
    assert not rule.active


def test_diagnostic_string_names_file_line_column_rule_and_suggestion() -> None:
    """str() of a diagnostic is 'file:line:col: rule X: message (did you mean 'y'?)'."""
    errors = errors_of(rule_yaml("fan_in_24hr >= 3"))
    assert [str(e) for e in errors] == [
        "rules.yaml:9:7: rule R_TEST: in 'when': unknown feature 'fan_in_24hr' (did you mean 'fan_in_24h'?)"
    ]
    error = errors[0]
    assert (error.file, error.rule_id, error.line, error.column) == ("rules.yaml", "R_TEST", 9, 7)
    assert error.expected == "a feature of the catalogue" and error.got == "fan_in_24hr"


def test_positions_inside_a_folded_multi_line_condition() -> None:
    """An error on the second line of a folded 'when' points at that line and column of the file."""
    text = rule_yaml("amount_cny >= 1000 and\nchannel == TELER")
    (error,) = errors_of(text)
    assert (error.line, error.column) == (10, 18)
    assert text.splitlines()[error.line - 1][error.column - 1 :].startswith("TELER")
    assert error.suggestion == "TELLER"


def test_positions_inside_a_quoted_single_line_condition() -> None:
    """Quoted 'when' values are located past the opening quote."""
    text = GOOD_RULE.replace(
        "when: is_just_under_threshold and under_threshold_count_7d >= 2",
        "when: \"is_night and amount_cny / fan_in_24h > 2\"",
    )
    (error,) = errors_of('version: "3"\nrules:\n' + text)
    line = ('version: "3"\nrules:\n' + text).splitlines()[error.line - 1]
    assert line[error.column - 1 :].startswith("fan_in_24h")
    assert "division" in error.message


def test_syntax_error_in_when_has_a_position() -> None:
    """A syntax error inside a condition names its column."""
    (error,) = errors_of(rule_yaml("amount_cny > 1 && is_night"))
    assert (error.line, error.column) == (9, 22)
    assert error.suggestion == "and"


def test_every_syntax_error_in_a_when_has_its_position() -> None:
    """An analyst sees each broken clause of a condition at once, each at its line and column."""
    errors = errors_of(rule_yaml("amount_cny > and is_night\nor channel in TELLER"))
    assert [(e.line, e.column) for e in errors] == [(9, 20), (10, 21)]  # at "and", at "TELLER"
    assert "expected a value" in errors[0].message and "followed by a list" in errors[1].message


def test_a_bad_file_is_rejected_as_a_whole_with_every_error() -> None:
    """One good rule and several broken ones: nothing is returned, every problem is listed in file order."""
    text = textwrap.dedent(
        """\
        version: "1"
        rules:
          - id: R_ONE
            description: {zh-CN: 一, en: one}
            typology: velocity
            when: out_count_1h >= 10
            score: 100
            reason: {zh-CN: 一, en: one}
          - id: R_TWO
            description: {zh-CN: 二, en: two}
            typology: velocitty
            when: out_count_1h >= 10
            score: 1001
            action_floor: BLOK
            channels: [TELLER, TELLER, BRANCH]
            mode: dark
            reason: {zh-CN: "{out_count_1hh}", en: two}
            colour: red
          - id: R_ONE
            description: {zh-CN: 三}
            typology: velocity
            when: out_count_1h >= 10
            score: "high"
            reason: {zh-CN: 三, en: three}
          - id: lower_case
            description: {zh-CN: 四, en: four}
            typology: velocity
            score: 1
            reason: {zh-CN: 四, en: four}
        """
    )
    errors = errors_of(text)
    messages = [(e.line, e.rule_id, e.message, e.suggestion) for e in errors]
    assert [m[0] for m in messages] == sorted(m[0] for m in messages)
    found = "\n".join(f"{line} {rule} {message} {suggestion}" for line, rule, message, suggestion in messages)
    for expected in [
        "11 R_TWO unknown typology 'velocitty' (see docs/rules.md for the list) velocity",
        "13 R_TWO the score 1001 is outside 0..1000",
        "14 R_TWO action_floor must be REVIEW, CHALLENGE or BLOCK (or be left out) BLOCK",
        "15 R_TWO channel TELLER is listed twice",
        "15 R_TWO unknown channel 'BRANCH'",
        "16 R_TWO mode must be 'active' or 'shadow'",
        "17 R_TWO in 'reason' zh-CN: unknown feature 'out_count_1hh' in the template out_count_1h",
        "18 R_TWO unknown key 'colour' in rule R_TWO",
        "19 R_ONE duplicate rule id R_ONE (first on line 3)",
        "20 R_ONE 'description' has no 'en' text",
        "23 R_ONE the score must be a number from 0 to 1000",
        "25 lower_case a rule id is 2-64 capital letters",
        "25 lower_case the rule has no 'when'",
    ]:
        assert expected in found, f"missing: {expected}\nin:\n{found}"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", 1, "the rule file is empty"),
        ("version: 2026.11\nrules: []\n", 1, "the version must be quoted text"),
        ('version: "1"\n', 1, "has no 'rules' list"),
        ('version: "1"\nrules: []\n', 2, "'rules' must be a non-empty list"),
        ('version: "1"\nrules:\n  - [1, 2]\n', 3, "must be a mapping"),
        ('version: "1"\nrulez: []\n', 2, "unknown key 'rulez'"),
        ('version: "1"\nrules:\n  - id: R_A\n    when: "unclosed\n', 5, "YAML syntax error"),
        ("- just\n- a list\n", 1, "the rule file must be a mapping"),
    ],
)
def test_file_level_problems(text: str, line: int, fragment: str) -> None:
    """Problems outside any rule are reported with their line."""
    errors = errors_of(text)
    assert any(fragment in e.message and e.line == line for e in errors), errors


def test_yaml_syntax_error_reports_line_and_column() -> None:
    """PyYAML's problem mark becomes the diagnostic position."""
    (error,) = errors_of('version: "1"\nrules:\n  - id: R_A\n   bad indent: 1\n')
    assert error.line == 4 and error.column >= 1
    assert error.message.startswith("YAML syntax error")


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{amount_cny.__class__}", "a placeholder must be a feature name"),
        ("{0}", "a placeholder must be a feature name"),
        ("{amount_cny!r}", "a placeholder must be a feature name"),
        ("{amount_cny:zz}", "invalid format spec"),
        ("open {amount_cny", "is not closed"),
        ("close }", "single '}'"),
    ],
)
def test_template_problems_are_reported(template: str, fragment: str) -> None:
    """Reason templates only quote features, with valid format specs and balanced braces."""
    errors = errors_of(rule_yaml("is_night", reason_en=template))
    assert any(fragment in e.message for e in errors), errors


def _node_facts(node: object) -> list[tuple[object, ...]]:
    """Every node of a composed tree, depth first: kind, tag, scalar value and style, and start and end marks."""
    assert isinstance(node, Node)
    style = getattr(node, "style", None) or None  # libyaml says "" where PyYAML says None for plain scalars
    facts: list[tuple[object, ...]] = [(
        type(node).__name__, node.tag, node.value if isinstance(node.value, str) else None, style,
        node.start_mark.line, node.start_mark.column, node.start_mark.index,
        node.end_mark.line, node.end_mark.column, node.end_mark.index,
    )]
    if isinstance(node, MappingNode):
        for key, value in node.value:
            facts += _node_facts(key) + _node_facts(value)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            facts += _node_facts(item)
    return facts


def test_the_fast_composer_gives_the_nodes_and_positions_of_pure_python_yaml() -> None:
    """The shipped pack, a rule with Chinese text and every style of scalar compose to the same nodes and marks
    whichever parser reads them, so diagnostics point at the same characters."""
    texts = [
        PACK.read_text(encoding="utf-8"),
        rule_yaml("amount_cny > 1000 and txn_count_1h >= 3"),
        'version: "1"\nrules:\n  - id: R_CN\n    description: {zh: "大额转账 给 新收款人", en: "big"}\n'
        "    when: >\n      amount_cny > 50000\n      and payee_new\n    reason: |\n      金额 {amount_cny}\n"
        "    score: 300\n    tags: ['a', \"b\", c]\n",
    ]
    for text in texts:
        fast, problems = YamlSource.of(text, "rules.yaml").compose()
        assert not problems
        assert _node_facts(fast) == _node_facts(yaml.compose(text, Loader=yaml.SafeLoader))
