"""Read a rule file: validate its YAML structure and run every ``when`` and template through
the compiler stages (parse, check, fold), collecting every problem of the whole file.

A file with any problem is rejected as a whole (RuleCompileError with all diagnostics, in
file order); otherwise the result holds each rule with its folded condition and parsed
templates, ready for code generation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from rules_engine import _ast as ast
from rules_engine._checks import SymbolTable, check, closest_name
from rules_engine._errors import ExpressionIssue, ExpressionSyntaxError, RuleCompileError, RuleDiagnostic
from rules_engine._folding import fold
from rules_engine._model import ACTION_FLOORS, MODES, TYPOLOGIES, Rule
from rules_engine._parser import parse
from rules_engine._templates import Template, parse_template
from rules_engine._yaml import MappingNode, Node, ScalarNode, SequenceNode, YamlSource, describe_node

__all__ = ["CompiledRule", "RuleFile", "read_rule_file"]

_RULE_ID = re.compile(r"[A-Z][A-Z0-9_]{1,63}\Z")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_TOP_KEYS = ("version", "rules")
_RULE_KEYS = (
    "id", "description", "typology", "when", "score", "action_floor", "channels", "mode", "reason", "guidance",
)
_REQUIRED_RULE_KEYS = ("id", "description", "typology", "when", "score", "reason")
_LOCALES = ("zh-CN", "en")
CHANNEL_ENUM = "Channel"


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule that passed every check: the public Rule plus what evaluation needs."""

    rule: Rule
    checked: ast.Expr  # the typed condition as written
    condition: ast.Expr  # the same after constant folding
    reason: tuple[Template, Template]  # (zh-CN, en)
    guidance: tuple[Template, Template] | None
    line: int


@dataclass(frozen=True, slots=True)
class RuleFile:
    """A rule file that compiled: its declared version and its rules in file order."""

    version: str
    rules: tuple[CompiledRule, ...]


class _Reader:
    def __init__(self, source: YamlSource, symbols: SymbolTable) -> None:
        self.source = source
        self.symbols = symbols
        self.errors: list[RuleDiagnostic] = []

    def error(self, node: Node | tuple[int, int], rule_id: str, message: str, **fields: str) -> None:
        self.errors.append(self.source.diagnostic(node, rule_id, message, **fields))

    # -- structure helpers -------------------------------------------------------------------
    def mapping(self, node: Node, rule_id: str, what: str, allowed: tuple[str, ...]) -> dict[str, tuple[Node, Node]]:
        """Keys of a mapping node, reporting non-text, unknown and duplicate keys."""
        if not isinstance(node, MappingNode):
            self.error(node, rule_id, f"{what} must be a mapping", expected="a mapping", got=describe_node(node))
            return {}
        found: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = self.source.scalar(key_node) if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str):
                self.error(key_node, rule_id, f"keys of {what} must be text", expected="text")
                continue
            if key in found:
                line, _ = self.source.position(found[key][0])
                self.error(key_node, rule_id, f"{key!r} appears twice in {what} (first on line {line})",
                           expected="each key once")
                continue
            if key not in allowed:
                self.error(key_node, rule_id, f"unknown key {key!r} in {what} (allowed: {', '.join(allowed)})",
                           expected="one of " + ", ".join(allowed), got=key,
                           suggestion=closest_name(key, list(allowed)))
                continue
            found[key] = (key_node, value_node)
        return found

    def text(self, node: Node, rule_id: str, what: str, *, allow_empty: bool = False) -> str | None:
        value = self.source.scalar(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            self.error(node, rule_id, f"{what} must be non-empty text", expected="text", got=describe_node(node))
            return None
        return value

    def issues(self, node: ScalarNode, rule_id: str, issues: list[ExpressionIssue], what: str) -> None:
        positions = self.source.char_positions(node)
        for issue in issues:
            where = positions[min(issue.offset, len(positions) - 1)]
            self.error(where, rule_id, f"{what}: {issue.message}", expected=issue.expected, got=issue.got,
                       suggestion=issue.suggestion)

    # -- the file ----------------------------------------------------------------------------
    def read(self) -> RuleFile | None:
        root, problems = self.source.compose()
        if problems:
            self.errors.extend(problems)
            return None
        if root is None:
            self.error((1, 1), "", "the rule file is empty", expected="a mapping with 'version' and 'rules'")
            return None
        top = self.mapping(root, "", "the rule file", _TOP_KEYS)
        if not isinstance(root, MappingNode):
            return None
        version = self.version(top, root)
        rules: list[CompiledRule] = []
        if "rules" not in top:
            self.error(root, "", "the rule file has no 'rules' list", expected="rules: [...]")
        else:
            rules_node = top["rules"][1]
            if not isinstance(rules_node, SequenceNode) or not rules_node.value:
                self.error(rules_node, "", "'rules' must be a non-empty list of rules", expected="a list",
                           got=describe_node(rules_node))
            else:
                first_line: dict[str, int] = {}
                for rule_node in rules_node.value:
                    compiled = self.rule(rule_node, first_line)
                    if compiled is not None:
                        rules.append(compiled)
        if self.errors or version is None:
            return None
        return RuleFile(version=version, rules=tuple(rules))

    def version(self, top: dict[str, tuple[Node, Node]], root: Node) -> str | None:
        if "version" not in top:
            self.error(root, "", "the rule file has no 'version'", expected='version: "2026.11.1"')
            return None
        node = top["version"][1]
        value = self.source.scalar(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, str):
            self.error(node, "", "the version must be quoted text, e.g. \"2026.11.1\"", expected="quoted text",
                       got=describe_node(node))
            return None
        if not _VERSION.match(value):
            self.error(node, "", "the version may only contain letters, digits, '.', '_' and '-'",
                       expected="e.g. 2026.11.1", got=value)
            return None
        return value

    # -- one rule ----------------------------------------------------------------------------
    def rule(self, node: Node, first_line: dict[str, int]) -> CompiledRule | None:
        errors_before = len(self.errors)
        rule_id = ""
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, ScalarNode) and key_node.value == "id" and isinstance(value_node, ScalarNode):
                    rule_id = str(value_node.value)
        fields = self.mapping(node, rule_id, f"rule {rule_id or '(no id)'}", _RULE_KEYS)
        if not isinstance(node, MappingNode):
            return None
        for key in _REQUIRED_RULE_KEYS:
            if key not in fields:
                self.error(node, rule_id, f"the rule has no {key!r}", expected=f"a {key!r} key")
        if "id" in fields:
            id_node = fields["id"][1]
            value = self.source.scalar(id_node) if isinstance(id_node, ScalarNode) else None
            if not isinstance(value, str) or not _RULE_ID.match(value):
                self.error(id_node, rule_id, "a rule id is 2-64 capital letters, digits and '_', starting with a "
                           "letter, e.g. R_TELLER_ELDERLY_LARGE_SHARE", expected="e.g. R_STRUCTURING_REPEATED",
                           got=str(value))
            elif value in first_line:
                self.error(id_node, rule_id, f"duplicate rule id {value} (first on line {first_line[value]})",
                           expected="a unique id")
            else:
                first_line[value] = self.source.position(id_node)[0]

        description = self.localized(fields, "description", rule_id, required=True)
        typology = self.typology(fields, rule_id)
        score = self.score(fields, rule_id)
        floor = self.action_floor(fields, rule_id)
        channels = self.channels(fields, rule_id)
        mode = self.mode(fields, rule_id)
        condition = self.condition(fields, rule_id)
        reason = self.templates(fields, "reason", rule_id, required=True)
        guidance = self.templates(fields, "guidance", rule_id, required=False)

        if len(self.errors) > errors_before:
            return None
        assert description is not None and typology is not None and score is not None and floor is not None
        assert channels is not None and mode is not None and condition is not None and reason is not None
        checked, folded, when = condition
        rule = Rule(
            id=rule_id, description_zh=description[0][0], description_en=description[1][0], typology=typology,
            score=score, action_floor=floor, channels=channels, mode=mode,
            reason_zh=reason[0].text, reason_en=reason[1].text,
            guidance_zh=guidance[0].text if guidance else "", guidance_en=guidance[1].text if guidance else "",
            when=when,
        )
        return CompiledRule(
            rule=rule, checked=checked, condition=folded, reason=reason, guidance=guidance,
            line=self.source.position(node)[0],
        )

    def localized(
        self, fields: dict[str, tuple[Node, Node]], key: str, rule_id: str, *, required: bool
    ) -> tuple[tuple[str, ScalarNode], tuple[str, ScalarNode]] | None:
        """The (zh-CN, en) texts of a localized field with their nodes; None when absent or invalid."""
        if key not in fields:
            return None
        node = fields[key][1]
        if not required and isinstance(node, ScalarNode) and node.tag.endswith(":null"):
            return None
        entries = self.mapping(node, rule_id, f"'{key}'", _LOCALES)
        if not isinstance(node, MappingNode):
            return None
        values: list[tuple[str, ScalarNode]] = []
        for locale in _LOCALES:
            if locale not in entries:
                self.error(node, rule_id, f"'{key}' has no {locale!r} text", expected=f"'{locale}: ...'")
                continue
            value_node = entries[locale][1]
            value = self.text(value_node, rule_id, f"'{key}' {locale}")
            if value is not None and isinstance(value_node, ScalarNode):
                values.append((value, value_node))
        return (values[0], values[1]) if len(values) == 2 else None

    def typology(self, fields: dict[str, tuple[Node, Node]], rule_id: str) -> str | None:
        if "typology" not in fields:
            return None
        node = fields["typology"][1]
        value = self.text(node, rule_id, "the typology")
        if value is None:
            return None
        if value not in TYPOLOGIES:
            self.error(node, rule_id, f"unknown typology {value!r} (see docs/rules.md for the list)",
                       expected="one of " + ", ".join(TYPOLOGIES), got=value,
                       suggestion=closest_name(value, list(TYPOLOGIES)))
            return None
        return value

    def score(self, fields: dict[str, tuple[Node, Node]], rule_id: str) -> float | None:
        if "score" not in fields:
            return None
        node = fields["score"][1]
        value = self.source.scalar(node) if isinstance(node, ScalarNode) else None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.error(node, rule_id, "the score must be a number from 0 to 1000", expected="a number",
                       got=describe_node(node))
            return None
        if not 0 <= value <= 1000:
            self.error(node, rule_id, f"the score {value} is outside 0..1000", expected="0 to 1000", got=str(value))
            return None
        return float(value)

    def action_floor(self, fields: dict[str, tuple[Node, Node]], rule_id: str) -> int | None:
        if "action_floor" not in fields:
            return 0
        node = fields["action_floor"][1]
        value = self.source.scalar(node) if isinstance(node, ScalarNode) else None
        if value is None:
            return 0
        if not isinstance(value, str) or value not in ACTION_FLOORS:
            self.error(node, rule_id, "action_floor must be REVIEW, CHALLENGE or BLOCK (or be left out)",
                       expected="REVIEW, CHALLENGE or BLOCK", got=str(value),
                       suggestion=closest_name(str(value).upper(), list(ACTION_FLOORS)))
            return None
        return ACTION_FLOORS[value]

    def channels(self, fields: dict[str, tuple[Node, Node]], rule_id: str) -> frozenset[int] | None:
        if "channels" not in fields:
            return frozenset()
        node = fields["channels"][1]
        members = self.symbols.enums[CHANNEL_ENUM]
        if not isinstance(node, SequenceNode) or not node.value:
            self.error(node, rule_id, "channels must be a non-empty list of channel names, e.g. [TELLER, ATM] "
                       "(leave it out for every channel)", expected="a list", got=describe_node(node))
            return None
        numbers: set[int] = set()
        ok = True
        for item in node.value:
            value = self.source.scalar(item) if isinstance(item, ScalarNode) else None
            if not isinstance(value, str) or value not in members:
                self.error(item, rule_id, f"unknown channel {value!r}", expected="one of " + ", ".join(members),
                           got=str(value), suggestion=closest_name(str(value).upper(), list(members)))
                ok = False
            elif members[value] in numbers:
                self.error(item, rule_id, f"channel {value} is listed twice", expected="each channel once")
                ok = False
            else:
                numbers.add(members[value])
        return frozenset(numbers) if ok else None

    def mode(self, fields: dict[str, tuple[Node, Node]], rule_id: str) -> str | None:
        if "mode" not in fields:
            return "active"
        node = fields["mode"][1]
        value = self.source.scalar(node) if isinstance(node, ScalarNode) else None
        if value not in MODES:
            self.error(node, rule_id, "mode must be 'active' or 'shadow'", expected="active or shadow",
                       got=str(value), suggestion=closest_name(str(value), list(MODES)))
            return None
        return str(value)

    def condition(
        self, fields: dict[str, tuple[Node, Node]], rule_id: str
    ) -> tuple[ast.Expr, ast.Expr, str] | None:
        if "when" not in fields:
            return None
        node = fields["when"][1]
        text = self.text(node, rule_id, "'when'")
        if text is None or not isinstance(node, ScalarNode):
            return None
        try:
            tree = parse(text)
        except ExpressionSyntaxError as error:
            self.issues(node, rule_id, error.issues, "in 'when'")
            return None
        checked, issues = check(tree, self.symbols)
        if checked is None:
            self.issues(node, rule_id, issues, "in 'when'")
            return None
        folded, fold_issues = fold(checked)
        if fold_issues:
            self.issues(node, rule_id, fold_issues, "in 'when'")
            return None
        return checked, folded, text.strip()

    def templates(
        self, fields: dict[str, tuple[Node, Node]], key: str, rule_id: str, *, required: bool
    ) -> tuple[Template, Template] | None:
        texts = self.localized(fields, key, rule_id, required=required)
        if texts is None:
            return None
        parsed: list[Template] = []
        for locale, (text, node) in zip(_LOCALES, texts, strict=True):
            template, issues = parse_template(text, self.symbols)
            if template is None:
                self.issues(node, rule_id, issues, f"in '{key}' {locale}")
            else:
                parsed.append(template)
        return (parsed[0], parsed[1]) if len(parsed) == 2 else None


def read_rule_file(text: str, *, source: str, symbols: SymbolTable) -> RuleFile:
    """The compiled rules of a rule file; raises RuleCompileError listing every problem."""
    reader = _Reader(YamlSource.of(text, source), symbols)
    result = reader.read()
    if result is None or reader.errors:
        errors = sorted(reader.errors, key=lambda d: (d.line, d.column))
        raise RuleCompileError(errors)
    return result
