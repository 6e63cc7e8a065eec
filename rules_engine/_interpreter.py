"""The reference semantics of the rule language: a pure-Python evaluator of the typed AST.

Constant folding uses these functions, the generated numba kernel spells out the same
operations (``_codegen`` mirrors ``fmin``/``fmax``/``fclip``/``fdiv`` line for line), and the
tests hold the kernel to this evaluator on random feature rows. It is also the "pure Python"
contender in bench/bench_rules.py. Every value is a float64, booleans are Python bools.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rules_engine import _ast as ast

__all__ = ["evaluate", "evaluate_condition", "fclip", "fdiv", "fmax", "fmin"]


def fmin(a: float, b: float) -> float:
    """min of two floats, keeping ``a`` unless ``b`` is smaller (NaN-compatible with the kernel)."""
    return b if b < a else a


def fmax(a: float, b: float) -> float:
    """max of two floats, keeping ``a`` unless ``b`` is larger."""
    return b if b > a else a


def fclip(x: float, low: float, high: float) -> float:
    """``x`` limited to [low, high]: min(max(x, low), high)."""
    return fmin(fmax(x, low), high)


def fdiv(a: float, b: float) -> float:
    """IEEE division (what numba's numpy error model does); the checker keeps divisors away from zero."""
    if b == 0.0:
        if a == 0.0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _call(function: str, args: list[float]) -> float:
    if function == "abs":
        return abs(args[0])
    if function == "sqrt":
        return math.sqrt(args[0]) if not args[0] < 0.0 else math.nan
    if function == "log1p":
        x = args[0]
        if x < -1.0:
            return math.nan
        return -math.inf if x == -1.0 else math.log1p(x)
    if function in ("min", "max"):
        pick = fmin if function == "min" else fmax
        result = args[0]
        for value in args[1:]:
            result = pick(result, value)
        return result
    if function == "clip":
        return fclip(args[0], args[1], args[2])
    raise AssertionError(f"unknown function {function}")


def evaluate(node: ast.Expr, row: Sequence[float]) -> float | bool:
    """The value of ``node`` for one feature row (a sequence in catalogue order)."""
    match node:
        case ast.Number(value=value):
            return value
        case ast.Boolean(value=value):
            return value
        case ast.Feature(index=index, type=value_type):
            value = float(row[index])
            return value != 0.0 if value_type == ast.BOOL else value
        case ast.EnumMember(value=value):
            return float(value)
        case ast.Negate(operand=operand):
            return -_number(operand, row)
        case ast.Arithmetic(op=op, left=left, right=right):
            a, b = _number(left, row), _number(right, row)
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            return fdiv(a, b)
        case ast.Call(function=function, args=args):
            return _call(function, [_number(arg, row) for arg in args])
        case ast.Compare(op=op, left=left, right=right):
            x, y = evaluate(left, row), evaluate(right, row)
            if op == "==":
                return x == y
            if op == "!=":
                return x != y
            if op == "<":
                return x < y
            if op == "<=":
                return x <= y
            if op == ">":
                return x > y
            return x >= y
        case ast.InList(operand=operand, values=values, negated=negated):
            x = evaluate(operand, row)
            return any(x == v for v in values) != negated
        case ast.Between(operand=operand, low=low, high=high, negated=negated):
            x = _number(operand, row)
            inside = _number(low, row) <= x and x <= _number(high, row)
            return inside != negated
        case ast.Logical(op=op, operands=operands):
            if op == "and":
                return all(evaluate_condition(o, row) for o in operands)
            return any(evaluate_condition(o, row) for o in operands)
        case ast.Not(operand=operand):
            return not evaluate_condition(operand, row)
    raise AssertionError(f"cannot evaluate {node!r}")


def _number(node: ast.Expr, row: Sequence[float]) -> float:
    value = evaluate(node, row)
    assert isinstance(value, float)
    return value


def evaluate_condition(node: ast.Expr, row: Sequence[float]) -> bool:
    """The truth of a condition for one feature row."""
    value = evaluate(node, row)
    assert isinstance(value, bool)
    return value
