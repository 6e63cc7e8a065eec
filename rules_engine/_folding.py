"""Stage 4: constant folding of the typed AST, with the reference semantics of ``_interpreter``.

Sub-expressions that read no feature are replaced by their value (``50_000 * 0.9`` becomes
``45000.0``, ``max(3, 5)`` becomes ``5.0``); ``and``/``or`` drop operands that cannot change
the result. A folded constant that is not finite is reported, since the kernel source
spells constants as float literals.
"""

from __future__ import annotations

import math

from rules_engine import _ast as ast
from rules_engine._errors import ExpressionIssue
from rules_engine._interpreter import evaluate

__all__ = ["fold"]


def _constant(node: ast.Expr) -> bool:
    return isinstance(node, ast.Number | ast.Boolean | ast.EnumMember)


def _fold(node: ast.Expr, issues: list[ExpressionIssue]) -> ast.Expr:
    match node:
        case ast.Negate(operand=operand, offset=offset):
            inner = _fold(operand, issues)
            node = ast.Negate(operand=inner, offset=offset)
        case ast.Arithmetic(op=op, left=left, right=right, offset=offset):
            node = ast.Arithmetic(op=op, left=_fold(left, issues), right=_fold(right, issues), offset=offset)
        case ast.Call(function=function, args=args, offset=offset):
            node = ast.Call(function=function, args=tuple(_fold(a, issues) for a in args), offset=offset)
        case ast.Compare(op=op, left=left, right=right, offset=offset):
            node = ast.Compare(op=op, left=_fold(left, issues), right=_fold(right, issues), offset=offset)
        case ast.InList(operand=operand, values=values, negated=negated, offset=offset):
            node = ast.InList(operand=_fold(operand, issues), values=values, negated=negated, offset=offset)
        case ast.Between(operand=operand, low=low, high=high, negated=negated, offset=offset):
            node = ast.Between(
                operand=_fold(operand, issues), low=_fold(low, issues), high=_fold(high, issues),
                negated=negated, offset=offset,
            )
        case ast.Not(operand=operand, offset=offset):
            inner = _fold(operand, issues)
            if isinstance(inner, ast.Not):
                return inner.operand
            node = ast.Not(operand=inner, offset=offset)
        case ast.Logical(op=op, operands=operands, offset=offset):
            return _fold_logical(op, [_fold(o, issues) for o in operands], offset)
        case _:
            return node
    if all(_constant(child) for child in ast.children(node)):
        value = evaluate(node, ())
        if isinstance(value, bool):
            return ast.Boolean(value=value, offset=node.offset)
        if not math.isfinite(value):
            issues.append(
                ExpressionIssue(
                    offset=node.offset,
                    message="this constant expression is not a finite number",
                    expected="a finite number",
                    got=repr(value),
                )
            )
            return node
        return ast.Number(value=value, offset=node.offset)
    return node


def _fold_logical(op: str, operands: list[ast.Expr], offset: int) -> ast.Expr:
    # ``and``: a false operand decides, a true one is neutral; ``or`` the other way round.
    deciding = op == "or"
    kept: list[ast.Expr] = []
    for operand in operands:
        if isinstance(operand, ast.Boolean):
            if operand.value is deciding:
                return ast.Boolean(value=deciding, offset=offset)
            continue
        kept.append(operand)
    if not kept:
        return ast.Boolean(value=not deciding, offset=offset)
    if len(kept) == 1:
        return kept[0]
    return ast.Logical(op=op, operands=tuple(kept), offset=offset)


def fold(node: ast.Expr) -> tuple[ast.Expr, list[ExpressionIssue]]:
    """``node`` with constant sub-expressions replaced by their values, and any problem found."""
    issues: list[ExpressionIssue] = []
    folded = _fold(node, issues)
    return folded, issues
