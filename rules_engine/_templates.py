"""Reason and guidance message templates: ``"24小时内收到{fan_in_24h}个不同账户转入"``.

A placeholder names one catalogue feature, optionally with a format spec
(``{amount_to_balance:.0%}``, ``{amount_cny:,.0f}``); ``{{`` and ``}}`` are literal braces.
Templates are parsed and checked when the rule file is compiled and rendered by our own
substitution, never by ``str.format`` on rule text, so a template cannot reach attributes.

Without a spec, values are written as: enum features by member name, integer and boolean
features as whole numbers, other numbers with thousands separators and no decimals when
whole (``48,000``), else two decimals (``0.95``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from features import FeatureKind
from rules_engine._checks import SymbolTable, closest_name
from rules_engine._errors import ExpressionIssue

__all__ = ["Template", "parse_template", "render_value"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INTEGER_TYPES = frozenset("bcdoxX")  # format types that need an int


@dataclass(frozen=True, slots=True)
class _Field:
    index: int
    spec: str
    kind: FeatureKind
    enum_names: Mapping[int, str]


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal text and feature fields, in order."""

    text: str
    parts: tuple[str | _Field, ...]
    features: frozenset[str]

    def render(self, row: Sequence[float] | np.ndarray) -> str:
        """The message for one feature row."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(render_value(float(row[part.index]), part.kind, part.spec, part.enum_names))
        return "".join(out)


def render_value(value: float, kind: FeatureKind, spec: str, enum_names: Mapping[int, str]) -> str:
    """One feature value as a template writes it (see the module docstring)."""
    if not math.isfinite(value):
        return format(value, "g")
    if spec:
        if spec[-1:] in _INTEGER_TYPES:
            return format(round(value), spec)
        return format(value, spec)
    if kind is FeatureKind.ENUM:
        return enum_names.get(round(value), format(value, "g"))
    if kind in (FeatureKind.INT, FeatureKind.BOOL):
        return str(round(value)) if value.is_integer() else format(value, "g")
    if value.is_integer():
        return format(value, ",.0f")
    return format(value, ",.2f")


def _split(text: str) -> tuple[list[tuple[str, int, str]], ExpressionIssue | None]:
    """Pieces ("literal"|"field", offset, content) of ``text``, or the first brace problem."""
    pieces: list[tuple[str, int, str]] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "{" and text[i + 1 : i + 2] == "{":
            literal.append("{")
            i += 2
        elif ch == "}" and text[i + 1 : i + 2] == "}":
            literal.append("}")
            i += 2
        elif ch == "{":
            end = text.find("}", i + 1)
            if end < 0:
                return pieces, ExpressionIssue(offset=i, message="'{' is not closed; write '{{' for a literal brace",
                                               expected="'}'")
            if literal:
                pieces.append(("literal", i, "".join(literal)))
                literal = []
            pieces.append(("field", i, text[i + 1 : end]))
            i = end + 1
        elif ch == "}":
            return pieces, ExpressionIssue(offset=i, message="single '}'; write '}}' for a literal brace",
                                           expected="'}}'")
        else:
            literal.append(ch)
            i += 1
    if literal:
        pieces.append(("literal", len(text), "".join(literal)))
    return pieces, None


def parse_template(text: str, symbols: SymbolTable) -> tuple[Template | None, list[ExpressionIssue]]:
    """The parsed template, or None and every problem (offsets are into ``text``)."""
    pieces, problem = _split(text)
    issues: list[ExpressionIssue] = [problem] if problem else []
    parts: list[str | _Field] = []
    names: set[str] = set()
    for what, offset, content in pieces:
        if what == "literal":
            parts.append(content)
            continue
        name, _, spec = content.partition(":")
        name = name.strip()
        if "!" in name or not _NAME.match(name):
            issues.append(ExpressionIssue(
                offset=offset,
                message=f"a placeholder must be a feature name, optionally with a format spec, got {{{content}}}",
                expected="{feature} or {feature:spec}",
                got="{" + content + "}",
            ))
            continue
        entry = symbols.features.get(name)
        if entry is None:
            issues.append(ExpressionIssue(
                offset=offset, message=f"unknown feature {name!r} in the template", expected="a feature name",
                got=name, suggestion=closest_name(name, list(symbols.features)),
            ))
            continue
        index, feature = entry
        enum_names = {v: k for k, v in symbols.enums.get(feature.enum, {}).items()}
        try:
            for sample in (0.0, 1.0, 12345.5):
                render_value(sample, feature.kind, spec, enum_names)
        except (ValueError, TypeError) as error:
            issues.append(ExpressionIssue(
                offset=offset, message=f"invalid format spec {spec!r} for {name}: {error}",
                expected="a Python format spec such as ',.0f' or '.0%'", got=spec,
            ))
            continue
        names.add(name)
        parts.append(_Field(index=index, spec=spec, kind=feature.kind, enum_names=enum_names))
    if issues:
        return None, issues
    return Template(text=text, parts=tuple(parts), features=frozenset(names)), []
