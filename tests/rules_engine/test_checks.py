"""Type and meaning checks against the feature catalogue: one test per kind of error, plus what passes."""

from __future__ import annotations

import pytest

from rules_engine import _ast as ast
from rules_engine._checks import SymbolTable, check, value_range
from rules_engine._errors import ExpressionIssue
from rules_engine._parser import parse

SYMBOLS = SymbolTable.from_catalogue()


def issues_of(text: str) -> list[ExpressionIssue]:
    typed, issues = check(parse(text), SYMBOLS)
    assert (typed is None) == bool(issues)
    return issues


def typed_of(text: str) -> ast.Expr:
    typed, issues = check(parse(text), SYMBOLS)
    assert not issues, issues
    assert typed is not None
    return typed


def _left(text: str) -> ast.Expr:
    compare = typed_of(text)
    assert isinstance(compare, ast.Compare)
    return compare.left


def only_issue(text: str) -> ExpressionIssue:
    issues = issues_of(text)
    assert len(issues) == 1, issues
    return issues[0]


def test_every_node_knows_its_type() -> None:
    """Features, constants and operators carry number, condition or enum types."""
    tree = typed_of("channel == TELLER and amount_cny * 2 > max(balance_cny, 1) and is_night")
    assert tree.type == ast.BOOL
    assert isinstance(tree, ast.Logical)
    compare = tree.operands[0]
    assert isinstance(compare, ast.Compare)
    assert compare.left.type == ast.ValueType("enum", "Channel")
    assert isinstance(compare.right, ast.EnumMember) and compare.right.value == 3
    arithmetic = tree.operands[1]
    assert isinstance(arithmetic, ast.Compare)
    assert arithmetic.left.type == ast.NUMBER and arithmetic.right.type == ast.NUMBER
    assert tree.operands[2].type == ast.BOOL


def test_unknown_feature_suggests_the_closest_name() -> None:
    """A misspelt feature is reported with a did-you-mean."""
    issue = only_issue("fan_in_24 >= 3")
    assert issue.message == "unknown feature 'fan_in_24'"
    assert issue.suggestion == "fan_in_24h"
    assert issue.offset == 0


def test_enum_member_of_another_enum_is_rejected() -> None:
    """CASH_WITHDRAWAL is a transaction type, not a channel; the message says which feature fits."""
    issue = only_issue("channel == CASH_WITHDRAWAL")
    assert "TransactionType name, not a Channel name" in issue.message
    assert issue.suggestion == "txn_type"
    assert issue.offset == 11


def test_misspelt_enum_member_suggests_the_member() -> None:
    """An unknown member name is matched against the compared feature's enum."""
    issue = only_issue("txn_type in [TRANSFER_OUT, CASH_WITHDRAWL]")
    assert "not a TransactionType name" in issue.message
    assert issue.suggestion == "CASH_WITHDRAWAL"
    assert issue.offset == 27


def test_enum_compared_with_a_number_suggests_the_member_name() -> None:
    """'channel == 3' is a type mismatch whose suggestion is TELLER."""
    issue = only_issue("channel == 3")
    assert "cannot compare a Channel value with a number" in issue.message
    assert issue.suggestion == "TELLER"


def test_strings_name_enum_members_only() -> None:
    """A quoted member name works like the bare name; elsewhere a string is an error."""
    tree = typed_of("risk_level == 'HIGH'")
    assert isinstance(tree, ast.Compare) and isinstance(tree.right, ast.EnumMember) and tree.right.value == 3
    assert "a string can only name an enum member" in only_issue("amount_cny > '5'").message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("is_night + 1 > 2", "'+' needs a number, got a condition"),
        ("channel * 2 > 1", "'*' needs a number, got a Channel value"),
        ("amount_cny and is_night", "'and' needs a condition, got a number"),
        ("not amount_cny", "'not' needs a condition, got a number"),
        ("amount_cny", "must be true or false, got a number"),
        ("is_night == 1", "use 'is_night' itself as a condition"),
        ("channel < TELLER", "'<' does not apply to a Channel value"),
        ("txn_type == channel", "cannot compare a TransactionType value with a Channel value"),
        ("is_night between 0 and 1", "'between' needs a number"),
        ("is_night in [1]", "'in' does not apply to a condition"),
        ("mcc in [7995, amount_cny]", "list items must be number constants"),
        ("channel in [TELLER, 3]", "items of a Channel list must be Channel names"),
        ("abs(is_night) > 0", "abs() needs a number"),
    ],
)
def test_type_mismatches_are_reported(text: str, fragment: str) -> None:
    """Operands of the wrong type are reported with what was expected."""
    issue = only_issue(text)
    assert fragment in issue.message
    assert issue.expected


@pytest.mark.parametrize(
    ("text", "fragment", "suggestion"),
    [
        ("maxx(amount_cny, 1) > 2", "unknown function 'maxx'", "max"),
        ("__import__('os') == 1", "unknown function '__import__'", ""),
        ("eval(amount_cny) > 1", "unknown function 'eval'", ""),
        ("amount_cny(1) > 1", "'amount_cny' is a feature, not a function", ""),
        ("max(amount_cny) > 1", "max() takes 2 to 8 arguments, got 1", ""),
        ("abs(amount_cny, 1) > 1", "abs() takes 1 argument, got 2", ""),
        ("max > 1", "'max' is a function", ""),
    ],
)
def test_function_calls_are_checked(text: str, fragment: str, suggestion: str) -> None:
    """Only the language's functions exist, with their argument counts."""
    issue = only_issue(text)
    assert fragment in issue.message
    assert issue.suggestion == suggestion


def test_bare_enum_name_outside_a_comparison() -> None:
    """An enum name alone is not a value; the message shows the comparison to write."""
    issue = only_issue("TELLER")
    assert "compare a feature with it, e.g. 'channel == TELLER'" in issue.message


@pytest.mark.parametrize(
    "text",
    [
        "amount_cny / balance_cny > 1",  # balance may be -1, 0 or anything
        "amount_cny / fan_in_24h > 1",  # nonnegative but may be zero
        "amount_cny / (fan_in_24h - 1) > 1",
        "amount_cny / abs(balance_cny) > 1",
        "amount_cny / max(balance_cny, 0) > 1",
        "amount_cny / 0 > 1",
    ],
)
def test_division_by_a_possibly_zero_value_is_rejected(text: str) -> None:
    """A divisor that is not provably nonzero is an error pointing at the divisor, suggesting max(x, 1)."""
    issue = only_issue(text)
    assert "division by a value that may be zero" in issue.message
    assert "max(value, 1)" in issue.message
    divisor = text[text.index("/") + 1 :].lstrip(" (")
    assert issue.offset == text.index(divisor)


@pytest.mark.parametrize(
    "text",
    [
        "amount_cny / max(balance_cny, 1) > 1",
        "amount_cny / (fan_in_24h + 1) > 1",
        "amount_cny / 1000 > 1",
        "amount_cny / -2 < -1",
        "amount_cny / (abs(balance_cny) + 0.5) > 1",
        "amount_cny / clip(balance_cny, 1, 100) > 1",
        "amount_cny / sqrt(fan_in_24h + 4) > 1",
        "log1p(out_sum_30d / max(out_count_30d, 1)) > 3",
    ],
)
def test_division_by_a_provably_nonzero_value_is_accepted(text: str) -> None:
    """Divisors that are nonzero constants or provably positive pass."""
    assert not issues_of(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1 > 0", "reads no feature"),
        ("true", "reads no feature"),
        ("amount_cny > 5 or 2 > 1", "reads no feature"),
        ("fan_in_24h >= 0", "always true"),
        ("fan_in_24h < 0", "always false"),
        ("abs(balance_cny) > -1", "always true"),
        ("amount_cny between 5 and 3", "always false"),
        ("is_night and fan_out_24h > -3", "always true"),
        ("mcc in [-1, -2]", "always false"),
        ("not (is_night and 1 == 1)", "reads no feature"),
    ],
)
def test_constant_conditions_are_rejected(text: str, fragment: str) -> None:
    """A condition that reads no feature, or that ranges make always true/false, is an error."""
    issues = issues_of(text)
    assert issues
    assert fragment in issues[0].message


def test_constant_subcondition_points_at_itself() -> None:
    """The reported offset is the constant part, not the whole condition."""
    issue = only_issue("amount_cny > 5 or 2 > 1")
    assert issue.offset == 18


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("sqrt(balance_cny) > 3", "sqrt() of a value that may be negative"),
        ("log1p(customer_age - 1) > 3", "log1p() of a value that may be -1 or less"),
        ("clip(amount_cny, 10, 5) > fan_in_24h", "clip() lower bound is above its upper bound"),
    ],
)
def test_function_domains_are_checked(text: str, fragment: str) -> None:
    """sqrt and log1p arguments must stay in their domain; clip bounds must be ordered."""
    assert fragment in only_issue(text).message


def test_list_problems() -> None:
    """Empty lists and repeated values in 'in [...]' are errors."""
    assert "empty" in only_issue("mcc in []").message
    assert "appears twice" in only_issue("channel in [TELLER, ATM, TELLER]").message


def test_several_errors_in_one_expression_are_all_reported() -> None:
    """Independent mistakes in one condition are reported together, in text order."""
    issues = issues_of("fan_in_24 > 3 and chanel == TELLER and is_night + 1 > 0")
    assert [i.suggestion for i in issues[:2]] == ["fan_in_24h", "channel"]
    assert "'+' needs a number" in issues[2].message
    assert [i.offset for i in issues] == sorted(i.offset for i in issues)


def test_meaning_checks_report_every_problem_of_a_well_typed_condition() -> None:
    """Once types are right, every division, domain and constant problem is reported."""
    issues = issues_of("amount_cny / fan_out_24h > 1 and sqrt(balance_cny) > 2 and fan_in_24h >= 0")
    assert ["division" in issues[0].message, "sqrt" in issues[1].message, "always true" in issues[2].message] == [
        True, True, True
    ]


def test_value_ranges_follow_the_catalogue() -> None:
    """Nonnegative features start at 0, others are unbounded, booleans are 0..1."""
    assert value_range(_left("fan_in_24h > 1")) == (0.0, float("inf"))
    assert value_range(_left("balance_cny > 1")) == (float("-inf"), float("inf"))
    combined = typed_of("max(balance_cny, 1) * 2 + 3 > 10")
    assert isinstance(combined, ast.Compare)
    assert value_range(combined.left) == (5.0, float("inf"))
