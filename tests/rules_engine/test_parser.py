"""Lexer and parser: tokens, precedence, and syntax errors with their offsets."""

from __future__ import annotations

import pytest

from rules_engine._errors import ExpressionSyntaxError
from rules_engine._lexer import TokenKind, tokenize
from rules_engine._parser import (
    SBetween,
    SBinary,
    SCall,
    SCompare,
    SIn,
    SLogical,
    SName,
    SNegate,
    SNot,
    SNumber,
    SString,
    parse,
)


def syntax_error(text: str) -> ExpressionSyntaxError:
    with pytest.raises(ExpressionSyntaxError) as caught:
        parse(text)
    return caught.value


def test_tokens_carry_kinds_and_offsets() -> None:
    """Each token records what it is and where it starts; keywords are case-insensitive."""
    tokens = tokenize("amount_cny >= 50_000 AND channel in ['TELLER']")
    assert [(t.kind, t.text, t.offset) for t in tokens] == [
        (TokenKind.NAME, "amount_cny", 0),
        (TokenKind.OPERATOR, ">=", 11),
        (TokenKind.NUMBER, "50000", 14),
        (TokenKind.KEYWORD, "and", 21),
        (TokenKind.NAME, "channel", 25),
        (TokenKind.KEYWORD, "in", 33),
        (TokenKind.LBRACKET, "[", 36),
        (TokenKind.STRING, "TELLER", 37),
        (TokenKind.RBRACKET, "]", 45),
        (TokenKind.END, "", 46),
    ]


def test_numbers_with_fractions_and_exponents() -> None:
    """Decimal fractions and exponents become floats."""
    tree = parse("x > 1.5e3")
    assert isinstance(tree, SCompare)
    assert tree.right == SNumber(1500.0, 4)


def test_and_binds_tighter_than_or_and_not_tighter_than_and() -> None:
    """'a or not b and c' parses as a or ((not b) and c)."""
    tree = parse("a or not b and c")
    assert isinstance(tree, SLogical) and tree.op == "or"
    first, second = tree.operands
    assert first == SName("a", 0)
    assert isinstance(second, SLogical) and second.op == "and"
    assert isinstance(second.operands[0], SNot)
    assert second.operands[1] == SName("c", 15)


def test_multiplication_binds_tighter_than_addition_and_comparison() -> None:
    """'a + b * 2 > -c' compares (a + (b * 2)) with (-c)."""
    tree = parse("a + b * 2 > -c")
    assert isinstance(tree, SCompare) and tree.op == ">"
    assert isinstance(tree.left, SBinary) and tree.left.op == "+"
    assert isinstance(tree.left.right, SBinary) and tree.left.right.op == "*"
    assert isinstance(tree.right, SNegate)


def test_arithmetic_is_left_associative() -> None:
    """'a - b - c' is (a - b) - c."""
    tree = parse("a - b - c > 0")
    assert isinstance(tree, SCompare)
    assert isinstance(tree.left, SBinary) and isinstance(tree.left.left, SBinary)
    assert tree.left.right == SName("c", 8)


def test_between_in_and_their_negations() -> None:
    """'between a and b' takes its 'and'; 'not in' and 'not between' set negated."""
    tree = parse("x between 1 and 2 and y not in [A, 'B'] and z not between 3 and 4")
    assert isinstance(tree, SLogical) and len(tree.operands) == 3
    between, inlist, not_between = tree.operands
    assert isinstance(between, SBetween) and not between.negated
    assert isinstance(inlist, SIn) and inlist.negated and inlist.items == (SName("A", 32), SString("B", 35))
    assert isinstance(not_between, SBetween) and not_between.negated


def test_calls_and_parentheses() -> None:
    """Calls take comma-separated arguments; parentheses group."""
    tree = parse("max(a, (b + 1) * 2) > 3")
    assert isinstance(tree, SCompare)
    call = tree.left
    assert isinstance(call, SCall) and call.name == "max" and len(call.args) == 2
    assert isinstance(call.args[1], SBinary) and call.args[1].op == "*"


@pytest.mark.parametrize(
    ("text", "offset", "fragment", "suggestion"),
    [
        ("a > 1 && b", 6, "'&&' is not an operator", "and"),
        ("a > 1 || b", 6, "'||' is not an operator", "or"),
        ("a = 1", 2, "'=' is not a comparison", "=="),
        ("a <> 1", 2, "'<>' is not an operator", "!="),
        ("!a", 0, "'!' is not an operator", "not"),
        ("a.b > 1", 1, "attribute access", ""),
        ("a % 2 == 0", 2, "no modulo", ""),
        ("a ** 2 > 1", 2, "no power", ""),
        ("a > 1; b", 5, "';'", ""),
        ("a > .5", 4, "leading zero", "0.5"),
        ("a > 1_", 5, "cannot end with '_'", ""),
        ("a > 1x", 5, "run into a name", ""),
        ("a == 'TELLER", 5, "not closed", ""),
    ],
)
def test_lexer_rejects_foreign_syntax_with_the_rule_spelling(
    text: str, offset: int, fragment: str, suggestion: str
) -> None:
    """Characters outside the language stop at their offset and name the rule-language spelling."""
    issue = syntax_error(text).issue
    assert issue.offset == offset
    assert fragment in issue.message
    assert issue.suggestion == suggestion


@pytest.mark.parametrize(
    ("text", "offset", "fragment"),
    [
        ("", 0, "empty"),
        ("a > ", 4, "expected a value"),
        ("a < b < c", 6, "cannot be chained"),
        ("(a > 1", 6, "expected ')'"),
        ("a in TELLER", 5, "must be followed by a list"),
        ("a between 1", 11, "needs 'and'"),
        ("max(a b)", 6, "expected ',' or ')'"),
        ("a[0] > 1", 1, "indexing"),
        ("[1] > a", 0, "list can only follow 'in'"),
        ("a > 1 b", 6, "unexpected"),
    ],
)
def test_parser_reports_the_first_syntax_error_at_its_offset(text: str, offset: int, fragment: str) -> None:
    """Syntax errors point at the token where the grammar stopped."""
    issue = syntax_error(text).issue
    assert issue.offset == offset
    assert fragment in issue.message


def test_deep_nesting_is_refused_instead_of_exhausting_the_stack() -> None:
    """A pathological nesting depth is a syntax error, not a RecursionError."""
    assert "nested too deeply" in syntax_error("(" * 500 + "a" + ")" * 500 + " > 1").issue.message
    assert "nested too deeply" in syntax_error("-" * 500 + "a > 1").issue.message


def test_every_broken_operand_of_an_expression_is_reported() -> None:
    """After a syntax error the parser resumes at the next 'and' / 'or', so each broken clause is reported once, at
    its own offset, in order."""
    text = "amount_cny > and channel in TELLER or (fan_in_24h >= 3 and ) or out_count_1h >= 2"
    issues = syntax_error(text).issues
    assert [(issue.offset, issue.message) for issue in issues] == [
        (text.index("and"), "expected a value, found 'and'"),
        (text.index("TELLER"), "'in' must be followed by a list such as [TELLER, ATM]"),
        (text.index(")"), "expected a value, found ')'"),
    ]


@pytest.mark.parametrize(
    ("text", "offsets"),
    [
        ("a > 1 and )", [10]),  # the stray ')' once, not again as "unexpected ')'"
        ("max(a >, b) > 1 and c <", [7, 23]),  # resumes at the ',' of the call
        ("(a > ) and b <", [5, 14]),  # resumes after the group
        ("a between and 5 or b >", [10, 22]),
    ],
)
def test_resuming_after_an_error_reports_no_echo_of_it(text: str, offsets: list[int]) -> None:
    """Resuming skips to a point the grammar can continue from: the same mistake is not reported twice."""
    assert [issue.offset for issue in syntax_error(text).issues] == offsets


def test_too_deep_nesting_is_not_resumed_after() -> None:
    """Nesting past the limit ends the parse at once, with the errors found before it."""
    error = syntax_error("a > and " + "(" * 500 + "b" + ")" * 500 + " > 1")
    assert [issue.message for issue in error.issues] == [
        "expected a value, found 'and'", "the expression is nested too deeply",
    ]
