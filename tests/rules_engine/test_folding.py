"""Constant folding: constants are computed once, and folding never changes what a condition means."""

from __future__ import annotations

import random

from rules_engine import _ast as ast
from rules_engine._checks import SymbolTable, check
from rules_engine._folding import fold
from rules_engine._interpreter import evaluate
from rules_engine._parser import parse

SYMBOLS = SymbolTable.from_catalogue()


def checked(text: str) -> ast.Expr:
    typed, issues = check(parse(text), SYMBOLS)
    assert typed is not None, issues
    return typed


def folded(text: str) -> ast.Expr:
    result, issues = fold(checked(text))
    assert not issues, issues
    return result


def numbers_in(node: ast.Expr) -> list[float]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Number)]


def test_arithmetic_on_constants_is_computed() -> None:
    """'50_000 * 0.9' becomes the single constant 45000."""
    tree = folded("amount_cny >= 50_000 * 0.9")
    assert isinstance(tree, ast.Compare)
    assert tree.right == ast.Number(value=45000.0, offset=14)


def test_functions_and_negation_of_constants_are_computed() -> None:
    """Calls and unary minus with constant arguments fold; the feature part stays."""
    tree = folded("amount_cny - max(3, 5) * abs(-2) > -sqrt(16) + log1p(0) + 8")
    assert isinstance(tree, ast.Compare)
    assert numbers_in(tree) == [10.0, 4.0]
    assert isinstance(tree.left, ast.Arithmetic) and tree.left.op == "-"


def test_constant_parts_inside_feature_expressions_fold() -> None:
    """Only the constant sub-tree folds: '(1 + 2) * amount_cny' keeps the product."""
    tree = folded("(1 + 2) * amount_cny > clip(7, 0, 5)")
    assert isinstance(tree, ast.Compare) and isinstance(tree.left, ast.Arithmetic)
    assert tree.left.left == ast.Number(value=3.0, offset=1)
    assert tree.right == ast.Number(value=5.0, offset=23)


def test_between_bounds_fold() -> None:
    """Constant bounds of 'between' are computed."""
    tree = folded("amount_cny between 0.9 * 50000 and 50000 - 0.01")
    assert isinstance(tree, ast.Between)
    assert numbers_in(tree) == [45000.0, 49999.99]


def test_logical_operators_drop_neutral_constants() -> None:
    """'x and true' is x, 'x or true' is true, 'not not x' is x (built directly: the checker forbids them)."""
    feature = checked("is_night")
    true, false = ast.Boolean(value=True, offset=0), ast.Boolean(value=False, offset=0)
    assert fold(ast.Logical(op="and", operands=(feature, true), offset=0))[0] == feature
    assert fold(ast.Logical(op="and", operands=(feature, false), offset=0))[0] == ast.Boolean(value=False, offset=0)
    assert fold(ast.Logical(op="or", operands=(false, feature), offset=0))[0] == feature
    assert fold(ast.Logical(op="or", operands=(feature, true), offset=0))[0] == ast.Boolean(value=True, offset=0)
    assert fold(ast.Not(operand=ast.Not(operand=feature, offset=0), offset=0))[0] == feature
    assert fold(ast.Not(operand=true, offset=0))[0] == ast.Boolean(value=False, offset=0)


def test_non_finite_constant_is_reported() -> None:
    """A constant that overflows to infinity cannot be written into the kernel and is an error."""
    _, issues = fold(checked("amount_cny * (1e300 * 1e300) > 5"))
    assert len(issues) == 1
    assert "not a finite number" in issues[0].message


def test_folding_preserves_meaning_on_random_rows() -> None:
    """The reference evaluator gives the same answer before and after folding, on 2,000 random rows."""
    conditions = [
        "amount_cny * (2 - 0.5) > 100 + 200 * 3",
        "max(amount_cny, 10 * 10) - min(3, 1, 2) between 50 and 40 * 50",
        "abs(balance_cny - 5 * 4) / (1 + 1) < sqrt(400) and not (is_night or fan_in_24h >= 2 + 1)",
        "log1p(out_sum_30d / max(out_count_30d, 3 - 2)) - log1p(9) >= 0.5 * 2",
        "clip(customer_age, 18 + 0, 60 + 5) != 30 + 5 or channel in [TELLER, ATM]",
    ]
    rng = random.Random(20261101)
    width = len(SYMBOLS.features)
    for text in conditions:
        before = checked(text)
        after = folded(text)
        assert after != before
        for _ in range(2000):
            row = [rng.choice([0.0, 1.0, 3.0, 35.0, 100.0, -1.0, rng.uniform(-50, 5000)]) for _ in range(width)]
            assert evaluate(before, row) == evaluate(after, row), (text, row)
