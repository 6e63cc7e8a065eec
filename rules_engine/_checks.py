"""Stage 3: resolve names against the feature catalogue, type the syntax tree, and check what it means.

``check`` turns a syntax tree into a typed AST and reports, by character offset: unknown
features and functions (with did-you-mean), type mismatches, enum members that do not
belong to the compared feature's enum, division by a value that may be zero, ``sqrt`` or
``log1p`` of a value outside their domain, and conditions that are constant (they read no
feature, or value ranges make them always true or always false). A conservative interval
analysis (``value_range``) provides the bounds for the last three checks.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass

from features import CATALOGUE, ENUMS, FeatureKind, FeatureSpec
from rules_engine import _ast as ast
from rules_engine import _parser as syn
from rules_engine._errors import ExpressionIssue

__all__ = ["SymbolTable", "check", "closest_name", "value_range"]

_INF = math.inf


@dataclass(frozen=True, slots=True, kw_only=True)
class SymbolTable:
    """What a rule may name: the catalogue's features (with their column) and the enums."""

    features: Mapping[str, tuple[int, FeatureSpec]]
    enums: Mapping[str, Mapping[str, int]]

    @classmethod
    def from_catalogue(
        cls, catalogue: tuple[FeatureSpec, ...] = CATALOGUE, enums: Mapping[str, Mapping[str, int]] = ENUMS
    ) -> SymbolTable:
        """The symbol table of a catalogue (the shipped one by default)."""
        return cls(features={spec.name: (i, spec) for i, spec in enumerate(catalogue)}, enums=enums)

    def enums_with_member(self, name: str) -> list[str]:
        """Names of the enums that have a member called ``name``."""
        return [enum for enum, members in self.enums.items() if name in members]


def closest_name(name: str, candidates: list[str] | tuple[str, ...] | frozenset[str]) -> str:
    """The candidate closest to a misspelt ``name``, or '' when none is close."""
    found = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    if not found:
        found = difflib.get_close_matches(name.lower(), sorted(candidates), n=1, cutoff=0.6)
    return found[0] if found else ""


# -- interval analysis -----------------------------------------------------------------------


def _safe(value: float, fallback: float) -> float:
    return fallback if math.isnan(value) else value


def _mul(a: float, b: float) -> float:
    # 0 * inf is 0 for bounds: a value that is exactly 0 times any finite value is 0.
    if a == 0.0 or b == 0.0:
        return 0.0
    return a * b


def value_range(node: ast.Expr) -> tuple[float, float]:
    """Conservative (low, high) bounds of a number-typed expression over every possible feature row."""
    match node:
        case ast.Number(value=value):
            return (value, value)
        case ast.Feature(kind=kind, nonnegative=nonnegative):
            if kind is FeatureKind.BOOL:
                return (0.0, 1.0)
            return (0.0, _INF) if nonnegative else (-_INF, _INF)
        case ast.Negate(operand=operand):
            low, high = value_range(operand)
            return (-high, -low)
        case ast.Arithmetic(op=op, left=left, right=right):
            (a, b), (c, d) = value_range(left), value_range(right)
            if op == "+":
                return (_safe(a + c, -_INF), _safe(b + d, _INF))
            if op == "-":
                return (_safe(a - d, -_INF), _safe(b - c, _INF))
            if op == "*":
                corners = [_mul(a, c), _mul(a, d), _mul(b, c), _mul(b, d)]
                return (min(corners), max(corners))
            if c > 0.0 or d < 0.0:
                quotients: list[float] = []
                for x in (a, b):
                    for y in (c, d):
                        if math.isinf(x) and math.isinf(y):
                            # inf/inf stands for any huge/huge ratio: anything from 0 to inf of that sign.
                            quotients.extend((0.0, math.copysign(_INF, x) * math.copysign(1.0, y)))
                        else:
                            quotients.append(x / y)
                return (min(quotients), max(quotients))
            return (-_INF, _INF)
        case ast.Call(function=function, args=args):
            ranges = [value_range(arg) for arg in args]
            if function == "abs":
                low, high = ranges[0]
                if low >= 0.0:
                    return (low, high)
                if high <= 0.0:
                    return (-high, -low)
                return (0.0, max(-low, high))
            if function == "min":
                return (min(r[0] for r in ranges), min(r[1] for r in ranges))
            if function == "max":
                return (max(r[0] for r in ranges), max(r[1] for r in ranges))
            if function == "clip":
                (a, b), (lo_a, lo_b), (hi_a, hi_b) = ranges
                low, high = max(a, lo_a), max(b, lo_b)
                return (min(low, hi_a), min(high, hi_b))
            if function == "sqrt":
                low, high = ranges[0]
                return (math.sqrt(max(low, 0.0)), math.sqrt(high) if high >= 0.0 else 0.0)
            if function == "log1p":
                low, high = ranges[0]
                return (math.log1p(low) if low > -1.0 else -_INF, math.log1p(high) if high > -1.0 else -_INF)
            raise AssertionError(f"no range for function {function}")
        case _:
            raise AssertionError(f"value_range of a {type(node).__name__}")


# -- typing ----------------------------------------------------------------------------------


class _Checker:
    def __init__(self, symbols: SymbolTable) -> None:
        self._symbols = symbols
        self.issues: list[ExpressionIssue] = []

    def _report(
        self, offset: int, message: str, *, expected: str = "", got: str = "", suggestion: str = ""
    ) -> None:
        self.issues.append(
            ExpressionIssue(offset=offset, message=message, expected=expected, got=got, suggestion=suggestion)
        )

    # names ------------------------------------------------------------------------------
    def _feature(self, name: str, offset: int) -> ast.Feature | None:
        entry = self._symbols.features.get(name)
        if entry is None:
            return None
        index, spec = entry
        return ast.Feature(
            name=name, index=index, kind=spec.kind, enum=spec.enum, nonnegative=spec.nonnegative, offset=offset
        )

    def _unknown_name(self, name: str, offset: int) -> None:
        owners = self._symbols.enums_with_member(name)
        if owners:
            self._report(
                offset,
                f"{name!r} is a {'/'.join(owners)} name; compare a feature with it, e.g. "
                f"'{self._example_feature(owners[0])} == {name}'",
                expected="a feature or a number",
                got=f"the enum name {name}",
            )
            return
        if name in ast.FUNCTIONS:
            self._report(offset, f"{name!r} is a function; call it with arguments, e.g. {name}(x, ...)",
                         expected="a feature", got=f"the function {name}")
            return
        candidates = list(self._symbols.features)
        self._report(
            offset,
            f"unknown feature {name!r}",
            expected="a feature of the catalogue",
            got=name,
            suggestion=closest_name(name, candidates),
        )

    def _example_feature(self, enum: str) -> str:
        for name, (_, spec) in self._symbols.features.items():
            if spec.enum == enum:
                return name
        return "feature"

    def _is_bare_member(self, node: syn.Syntax) -> bool:
        """A name that is not a feature, or a string: only meaningful as an enum member."""
        if isinstance(node, syn.SString):
            return True
        return isinstance(node, syn.SName) and node.name not in self._symbols.features

    def _member(self, node: syn.Syntax, enum: str, feature_hint: str) -> ast.EnumMember | None:
        assert isinstance(node, syn.SName | syn.SString)
        name = node.name if isinstance(node, syn.SName) else node.value
        members = self._symbols.enums[enum]
        if name in members:
            return ast.EnumMember(enum=enum, member=name, value=members[name], offset=node.offset)
        owners = self._symbols.enums_with_member(name)
        listed = ", ".join(members)
        if owners:
            other = owners[0]
            self._report(
                node.offset,
                f"{name} is a {other} name, not a {enum} name ({feature_hint} is a {enum}: {listed})",
                expected=f"a {enum} name",
                got=f"a {other} name",
                suggestion=self._example_feature(other) if isinstance(node, syn.SName) else "",
            )
            return None
        self._report(
            node.offset,
            f"{name!r} is not a {enum} name ({feature_hint} is one of {listed})",
            expected=f"a {enum} name",
            got=name,
            suggestion=closest_name(name, list(members)) or closest_name(name.upper(), list(members)),
        )
        return None

    # expressions ------------------------------------------------------------------------
    def convert(self, node: syn.Syntax) -> ast.Expr | None:
        """The typed node for ``node``, or None after reporting why it has no valid type."""
        match node:
            case syn.SNumber(value=value, offset=offset):
                return ast.Number(value=value, offset=offset)
            case syn.SBool(value=value, offset=offset):
                return ast.Boolean(value=value, offset=offset)
            case syn.SString(value=value, offset=offset):
                self._report(
                    offset,
                    "a string can only name an enum member in a comparison, e.g. channel == \"TELLER\"",
                    expected="a number, a feature or a condition",
                    got=f"the string {value!r}",
                )
                return None
            case syn.SName(name=name, offset=offset):
                feature = self._feature(name, offset)
                if feature is None:
                    self._unknown_name(name, offset)
                return feature
            case syn.SNegate(operand=operand, offset=offset):
                inner = self._number(operand, "'-'")
                return None if inner is None else ast.Negate(operand=inner, offset=offset)
            case syn.SBinary(op=op, left=left, right=right, offset=offset):
                lhs = self._number(left, f"'{op}'")
                rhs = self._number(right, f"'{op}'")
                if lhs is None or rhs is None:
                    return None
                return ast.Arithmetic(op=op, left=lhs, right=rhs, offset=offset)
            case syn.SCall():
                return self._call(node)
            case syn.SCompare():
                return self._compare(node)
            case syn.SIn():
                return self._in(node)
            case syn.SBetween():
                return self._between(node)
            case syn.SLogical(op=op, operands=operands, offset=offset):
                converted = [self._condition(operand, f"'{op}'") for operand in operands]
                if any(c is None for c in converted):
                    return None
                return ast.Logical(op=op, operands=tuple(c for c in converted if c is not None), offset=offset)
            case syn.SNot(operand=operand, offset=offset):
                inner = self._condition(operand, "'not'")
                return None if inner is None else ast.Not(operand=inner, offset=offset)
        raise AssertionError(f"unhandled syntax node {node!r}")

    def _number(self, node: syn.Syntax, context: str) -> ast.Expr | None:
        converted = self.convert(node)
        if converted is None:
            return None
        if converted.type != ast.NUMBER:
            hint = ""
            if converted.type == ast.BOOL:
                hint = "; a condition is not a number"
            elif converted.type.kind == "enum":
                hint = f"; {converted.type.enum} values can only be compared with == != or in [...]"
            self._report(
                converted.offset,
                f"{context} needs a number, got {converted.type.describe()}{hint}",
                expected="a number",
                got=converted.type.describe(),
            )
            return None
        return converted

    def _condition(self, node: syn.Syntax, context: str) -> ast.Expr | None:
        converted = self.convert(node)
        if converted is None:
            return None
        if converted.type != ast.BOOL:
            self._report(
                converted.offset,
                f"{context} needs a condition, got {converted.type.describe()}; compare it, e.g. '... > 0'",
                expected="a condition (true/false)",
                got=converted.type.describe(),
            )
            return None
        return converted

    def _call(self, node: syn.SCall) -> ast.Expr | None:
        if node.name not in ast.FUNCTIONS:
            listed = ", ".join(sorted(ast.FUNCTIONS))
            if node.name in self._symbols.features:
                message = f"{node.name!r} is a feature, not a function (the functions are {listed})"
            else:
                message = f"unknown function {node.name!r} (the functions are {listed})"
            self._report(node.offset, message, expected="one of " + listed, got=node.name,
                         suggestion=closest_name(node.name, list(ast.FUNCTIONS)))
            return None
        fewest, most = ast.FUNCTIONS[node.name]
        if not fewest <= len(node.args) <= most:
            wanted = str(fewest) if fewest == most else f"{fewest} to {most}"
            self._report(
                node.offset,
                f"{node.name}() takes {wanted} argument{'s' if most > 1 else ''}, got {len(node.args)}",
                expected=f"{wanted} arguments",
                got=str(len(node.args)),
            )
            return None
        args = [self._number(arg, f"{node.name}()") for arg in node.args]
        if any(a is None for a in args):
            return None
        return ast.Call(function=node.name, args=tuple(a for a in args if a is not None), offset=node.offset)

    def _compare(self, node: syn.SCompare) -> ast.Expr | None:
        left_bare, right_bare = self._is_bare_member(node.left), self._is_bare_member(node.right)
        if left_bare and right_bare:
            # Report the misspelt feature, not the enum name it was meant to be compared with.
            unknown = [
                side for side in (node.left, node.right)
                if isinstance(side, syn.SName) and not self._symbols.enums_with_member(side.name)
            ]
            for side in unknown:
                self.convert(side)
            if not unknown:
                self._report(node.offset, "this compares two constants; put a feature on one side",
                             expected="a feature on one side", got="two enum names")
            return None
        if left_bare or right_bare:
            bare, other_syntax = (node.left, node.right) if left_bare else (node.right, node.left)
            other = self.convert(other_syntax)
            if other is None:
                return None
            if other.type.kind != "enum":
                self.convert(bare)  # reports the unknown name or the misplaced string
                return None
            member = self._member(bare, other.type.enum, _hint(other))
            if member is None:
                return None
            left, right = (member, other) if left_bare else (other, member)
        else:
            maybe_left, maybe_right = self.convert(node.left), self.convert(node.right)
            if maybe_left is None or maybe_right is None:
                return None
            left, right = maybe_left, maybe_right
        return self._typed_compare(node, left, right)

    def _typed_compare(self, node: syn.SCompare, left: ast.Expr, right: ast.Expr) -> ast.Expr | None:
        lt, rt = left.type, right.type
        if lt == rt == ast.NUMBER:
            return ast.Compare(op=node.op, left=left, right=right, offset=node.offset)
        if lt == rt:
            if node.op not in ("==", "!="):
                self._report(
                    node.op_offset,
                    f"'{node.op}' does not apply to {lt.describe()}; use == or != (or 'in [...]')",
                    expected="== or !=",
                    got=node.op,
                )
                return None
            return ast.Compare(op=node.op, left=left, right=right, offset=node.offset)
        suggestion = ""
        message = f"cannot compare {lt.describe()} with {rt.describe()}"
        enum_side, number_side = (left, right) if lt.kind == "enum" else (right, left)
        if enum_side.type.kind == "enum" and isinstance(number_side, ast.Number):
            by_value = {v: k for k, v in self._symbols.enums[enum_side.type.enum].items()}
            suggestion = by_value.get(int(number_side.value), "") if number_side.value.is_integer() else ""
            message += f"; write a {enum_side.type.enum} name instead of a number"
        elif ast.BOOL in (lt, rt):
            bool_side = left if lt == ast.BOOL else right
            if isinstance(bool_side, ast.Feature):
                message += f"; use '{bool_side.name}' itself as a condition (or 'not {bool_side.name}')"
        self._report(node.op_offset, message, expected=lt.describe(), got=rt.describe(), suggestion=suggestion)
        return None

    def _in(self, node: syn.SIn) -> ast.Expr | None:
        operand = self.convert(node.operand)
        if operand is None:
            return None
        if not node.items:
            self._report(node.op_offset, "the list after 'in' is empty", expected="at least one value")
            return None
        values: list[float] = []
        ok = True
        if operand.type.kind == "enum":
            for item in node.items:
                if not self._is_bare_member(item):
                    self._report(
                        _syntax_offset(item),
                        f"items of a {operand.type.enum} list must be {operand.type.enum} names",
                        expected=f"a {operand.type.enum} name",
                    )
                    ok = False
                    continue
                member = self._member(item, operand.type.enum, _hint(operand))
                if member is None:
                    ok = False
                else:
                    values.append(float(member.value))
        elif operand.type == ast.NUMBER:
            for item in node.items:
                value = _constant_number(item)
                if value is None:
                    self._report(_syntax_offset(item), "list items must be number constants",
                                 expected="a number constant")
                    ok = False
                else:
                    values.append(value)
        else:
            self._report(
                node.op_offset,
                f"'in' does not apply to {operand.type.describe()}",
                expected="a number or an enum feature",
                got=operand.type.describe(),
            )
            return None
        if not ok:
            return None
        seen: set[float] = set()
        for item, value in zip(node.items, values, strict=True):
            if value in seen:
                self._report(_syntax_offset(item), "this value appears twice in the list", expected="distinct values")
                ok = False
            seen.add(value)
        if not ok:
            return None
        return ast.InList(operand=operand, values=tuple(values), negated=node.negated, offset=node.offset)

    def _between(self, node: syn.SBetween) -> ast.Expr | None:
        operand = self._number(node.operand, "'between'")
        low = self._number(node.low, "'between'")
        high = self._number(node.high, "'between'")
        if operand is None or low is None or high is None:
            return None
        return ast.Between(operand=operand, low=low, high=high, negated=node.negated, offset=node.offset)


def _hint(node: ast.Expr) -> str:
    return node.name if isinstance(node, ast.Feature) else "this value"


def _syntax_offset(node: syn.Syntax) -> int:
    return node.offset


def _constant_number(node: syn.Syntax) -> float | None:
    if isinstance(node, syn.SNumber):
        return node.value
    if isinstance(node, syn.SNegate) and isinstance(node.operand, syn.SNumber):
        return -node.operand.value
    return None


# -- meaning checks --------------------------------------------------------------------------


def _reads_a_feature(node: ast.Expr) -> bool:
    return any(isinstance(n, ast.Feature) for n in ast.walk(node))


def _always(node: ast.Expr) -> bool | None:
    """True/False when value ranges decide a comparison for every row; None when they do not."""
    match node:
        case ast.Compare(op=op, left=left, right=right) if left.type == ast.NUMBER:
            (a, b), (c, d) = value_range(left), value_range(right)
            if op == "<":
                return True if b < c else False if a >= d else None
            if op == "<=":
                return True if b <= c else False if a > d else None
            if op == ">":
                return True if a > d else False if b <= c else None
            if op == ">=":
                return True if a >= d else False if b < c else None
            if op == "==":
                return True if a == b == c == d else False if b < c or a > d else None
            return False if a == b == c == d else True if b < c or a > d else None
        case ast.Between(operand=operand, low=low, high=high, negated=negated):
            (a, b), (lo_a, lo_b), (hi_a, hi_b) = value_range(operand), value_range(low), value_range(high)
            inside: bool | None = None
            if lo_b <= a and b <= hi_a:
                inside = True
            elif b < lo_a or a > hi_b or lo_a > hi_b:
                inside = False
            return None if inside is None else inside != negated
        case ast.InList(operand=operand, values=values, negated=negated) if operand.type == ast.NUMBER:
            a, b = value_range(operand)
            if all(v < a or v > b for v in values):
                return negated
            return None
    return None


class _MeaningChecker:
    def __init__(self, report: _Checker) -> None:
        self._checker = report

    def _report(self, offset: int, message: str, *, expected: str = "", got: str = "", suggestion: str = "") -> None:
        self._checker.issues.append(
            ExpressionIssue(offset=offset, message=message, expected=expected, got=got, suggestion=suggestion)
        )

    def condition(self, node: ast.Expr) -> None:
        """Check a node in condition position: constant-ness first, then its parts."""
        if not _reads_a_feature(node):
            self._report(
                node.offset,
                "this condition reads no feature, so it is always the same; remove it or compare a feature",
                expected="a condition that depends on a feature",
                got="a constant condition",
            )
            return
        verdict = _always(node)
        if verdict is not None:
            self._report(
                node.offset,
                f"this condition is always {str(verdict).lower()} for every possible value of its features",
                expected="a condition that can be both true and false",
                got=f"always {str(verdict).lower()}",
            )
        match node:
            case ast.Logical(operands=operands):
                for operand in operands:
                    self.condition(operand)
            case ast.Not(operand=operand):
                self.condition(operand)
            case _:
                for child in ast.children(node):
                    self.value(child)

    def value(self, node: ast.Expr) -> None:
        """Check a value: divisions and function domains below it."""
        for child in ast.children(node):
            self.value(child)
        match node:
            case ast.Arithmetic(op="/", right=divisor):
                low, high = value_range(divisor)
                if not (low > 0.0 or high < 0.0):
                    self._report(
                        divisor.offset,
                        "division by a value that may be zero; divide by a nonzero constant or by "
                        "max(value, 1) (or another expression that is always positive)",
                        expected="a divisor that is never zero",
                        got="a divisor that may be zero",
                    )
            case ast.Call(function="sqrt", args=(arg,)):
                if value_range(arg)[0] < 0.0:
                    self._report(
                        arg.offset,
                        "sqrt() of a value that may be negative; use sqrt(max(value, 0))",
                        expected="a value that is never negative",
                        got="a value that may be negative",
                    )
            case ast.Call(function="log1p", args=(arg,)):
                if value_range(arg)[0] <= -1.0:
                    self._report(
                        arg.offset,
                        "log1p() of a value that may be -1 or less; use log1p(max(value, 0))",
                        expected="a value above -1",
                        got="a value that may be -1 or less",
                    )
            case ast.Call(function="clip", args=(_, low, high)):
                if value_range(low)[0] > value_range(high)[1]:
                    self._report(low.offset, "clip() lower bound is above its upper bound",
                                 expected="low <= high")


def check(tree: syn.Syntax, symbols: SymbolTable) -> tuple[ast.Expr | None, list[ExpressionIssue]]:
    """The typed AST of a ``when`` condition and every issue found (the AST is None when there are issues)."""
    checker = _Checker(symbols)
    typed = checker.convert(tree)
    if typed is not None and typed.type != ast.BOOL:
        checker.issues.append(
            ExpressionIssue(
                offset=typed.offset,
                message=f"a rule condition must be true or false, got {typed.type.describe()}; "
                "compare it, e.g. '... > 0'",
                expected="a condition (true/false)",
                got=typed.type.describe(),
            )
        )
        typed = None
    if typed is not None:
        _MeaningChecker(checker).condition(typed)
    issues = sorted(checker.issues, key=lambda issue: issue.offset)
    return (typed if not issues else None), issues
