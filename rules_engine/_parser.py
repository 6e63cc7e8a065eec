"""Stage 1b: parse the tokens of a ``when`` expression into a syntax tree (grammar in docs/rules.md).

The syntax tree records only what was written and where; names are resolved and types
assigned by ``_checks``. Precedence, loosest first: ``or``, ``and``, ``not``, comparisons
(``== != < <= > >=``, ``in [...]``, ``between a and b``, not chainable), ``+ -``, ``* /``,
unary ``-``, then literals, names, calls and parentheses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rules_engine._errors import ExpressionIssue, ExpressionSyntaxError
from rules_engine._lexer import Token, TokenKind, tokenize

__all__ = [
    "COMPARISON_OPERATORS",
    "SBetween",
    "SBinary",
    "SBool",
    "SCall",
    "SCompare",
    "SIn",
    "SLogical",
    "SName",
    "SNegate",
    "SNot",
    "SNumber",
    "SString",
    "Syntax",
    "parse",
]

COMPARISON_OPERATORS = frozenset({"==", "!=", "<", "<=", ">", ">="})
# Deep nesting is never needed in a rule and would exhaust the recursion limit.
_MAX_DEPTH = 60
_MAX_ISSUES = 10  # syntax errors reported for one expression at most


@dataclass(frozen=True, slots=True)
class SNumber:
    """A number literal."""

    value: float
    offset: int


@dataclass(frozen=True, slots=True)
class SString:
    """A quoted string (only meaningful as an enum member name)."""

    value: str
    offset: int


@dataclass(frozen=True, slots=True)
class SBool:
    """``true`` or ``false``."""

    value: bool
    offset: int


@dataclass(frozen=True, slots=True)
class SName:
    """A bare name: a feature or an enum member, resolved by the checker."""

    name: str
    offset: int


@dataclass(frozen=True, slots=True)
class SCall:
    """``name(arg, ...)``."""

    name: str
    args: tuple[Syntax, ...]
    offset: int


@dataclass(frozen=True, slots=True)
class SNegate:
    """Unary minus."""

    operand: Syntax
    offset: int


@dataclass(frozen=True, slots=True)
class SBinary:
    """Arithmetic: ``+ - * /``; ``offset`` is the left operand's, ``op_offset`` the operator's."""

    op: str
    left: Syntax
    right: Syntax
    offset: int
    op_offset: int


@dataclass(frozen=True, slots=True)
class SCompare:
    """A comparison ``left op right``."""

    op: str
    left: Syntax
    right: Syntax
    offset: int
    op_offset: int


@dataclass(frozen=True, slots=True)
class SIn:
    """``operand [not] in [items]``."""

    operand: Syntax
    items: tuple[Syntax, ...]
    negated: bool
    offset: int
    op_offset: int


@dataclass(frozen=True, slots=True)
class SBetween:
    """``operand [not] between low and high`` (both ends included)."""

    operand: Syntax
    low: Syntax
    high: Syntax
    negated: bool
    offset: int
    op_offset: int


@dataclass(frozen=True, slots=True)
class SLogical:
    """``a and b and ...`` or ``a or b or ...``."""

    op: str
    operands: tuple[Syntax, ...]
    offset: int


@dataclass(frozen=True, slots=True)
class SNot:
    """``not operand``."""

    operand: Syntax
    offset: int


Syntax = SNumber | SString | SBool | SName | SCall | SNegate | SBinary | SCompare | SIn | SBetween | SLogical | SNot


def _describe(token: Token) -> str:
    if token.kind is TokenKind.END:
        return "the end of the expression"
    if token.kind is TokenKind.STRING:
        return f"the string {token.text!r}"
    return f"'{token.text}'"


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._pos = 0
        self._depth = 0
        self._issues: list[ExpressionIssue] = []  # syntax errors the parser resumed after

    # -- token helpers -----------------------------------------------------------------
    def _peek(self, ahead: int = 0) -> Token:
        return self._tokens[min(self._pos + ahead, len(self._tokens) - 1)]

    def _advance(self) -> Token:
        token = self._tokens[self._pos]
        if token.kind is not TokenKind.END:
            self._pos += 1
        return token

    def _is(self, kind: TokenKind, text: str | None = None, ahead: int = 0) -> bool:
        token = self._peek(ahead)
        return token.kind is kind and (text is None or token.text == text)

    def _error(
        self, token: Token, message: str, *, expected: str, suggestion: str = "", recoverable: bool = True
    ) -> ExpressionSyntaxError:
        return ExpressionSyntaxError(
            ExpressionIssue(
                offset=token.offset, message=message, expected=expected, got=_describe(token), suggestion=suggestion
            ),
            recoverable=recoverable,
        )

    def _note(self, error: ExpressionSyntaxError) -> None:
        """Keep a syntax error to report; one at an offset already reported is the same mistake seen again."""
        if all(issue.offset != error.issue.offset for issue in self._issues):
            self._issues.append(error.issue)

    def _operand(self) -> Syntax:
        """An operand of 'and' / 'or'. After a syntax error in it: the error kept, the tokens up to the next 'and',
        'or', ',' or closing bracket of this level skipped, and a placeholder in its place, so the parse goes on
        and finds the errors of the other operands too."""
        depth = self._depth
        try:
            return self._not()
        except ExpressionSyntaxError as error:
            if not error.recoverable or len(self._issues) >= _MAX_ISSUES:
                raise
            self._note(error)
            self._depth = depth
            self._skip()
            return SBool(True, error.issue.offset)

    def _skip(self) -> None:
        level = 0
        while True:
            token = self._peek()
            if token.kind is TokenKind.END:
                return
            if level == 0 and (
                (token.kind is TokenKind.KEYWORD and token.text in ("and", "or"))
                or token.kind in (TokenKind.COMMA, TokenKind.RPAREN, TokenKind.RBRACKET)
            ):
                return
            if token.kind in (TokenKind.LPAREN, TokenKind.LBRACKET):
                level += 1
            elif token.kind in (TokenKind.RPAREN, TokenKind.RBRACKET):
                level -= 1
            self._advance()

    def _expect(self, kind: TokenKind, what: str) -> Token:
        token = self._peek()
        if token.kind is not kind:
            raise self._error(token, f"expected {what}, found {_describe(token)}", expected=what)
        return self._advance()

    # -- grammar -----------------------------------------------------------------------
    def parse(self) -> Syntax:
        if self._is(TokenKind.END):
            raise self._error(self._peek(), "the expression is empty", expected="a condition")
        try:
            tree = self._or()
        except ExpressionSyntaxError as error:  # one the parser could not resume after
            self._note(error)
            raise ExpressionSyntaxError(self._issues, recoverable=False) from None
        token = self._peek()
        if token.kind is not TokenKind.END:
            if token.kind is TokenKind.OPERATOR and token.text in COMPARISON_OPERATORS:
                self._note(self._error(
                    token,
                    "comparisons cannot be chained; join them with 'and' or use 'x between a and b'",
                    expected="'and', 'or' or the end of the expression",
                ))
            else:
                self._note(self._error(
                    token, f"unexpected {_describe(token)}",
                    expected="an operator, 'and', 'or' or the end of the expression",
                ))
        if self._issues:
            raise ExpressionSyntaxError(sorted(self._issues, key=lambda issue: issue.offset))
        return tree

    def _nested(self) -> None:
        self._depth += 1
        if self._depth > _MAX_DEPTH:
            raise self._error(self._peek(), "the expression is nested too deeply", expected="a simpler expression",
                              recoverable=False)

    def _or(self) -> Syntax:
        first = self._and()
        operands = [first]
        while self._is(TokenKind.KEYWORD, "or"):
            self._advance()
            operands.append(self._and())
        return first if len(operands) == 1 else SLogical("or", tuple(operands), _offset(first))

    def _and(self) -> Syntax:
        first = self._operand()
        operands = [first]
        while self._is(TokenKind.KEYWORD, "and"):
            self._advance()
            operands.append(self._operand())
        return first if len(operands) == 1 else SLogical("and", tuple(operands), _offset(first))

    def _not(self) -> Syntax:
        if self._is(TokenKind.KEYWORD, "not"):
            token = self._advance()
            self._nested()
            operand = self._not()
            self._depth -= 1
            return SNot(operand, token.offset)
        return self._comparison()

    def _comparison(self) -> Syntax:
        left = self._sum()
        token = self._peek()
        if token.kind is TokenKind.OPERATOR and token.text in COMPARISON_OPERATORS:
            self._advance()
            right = self._sum()
            return SCompare(token.text, left, right, _offset(left), token.offset)
        negated = False
        after = self._peek(1)
        if self._is(TokenKind.KEYWORD, "not") and after.kind is TokenKind.KEYWORD and after.text in ("in", "between"):
            negated = True
            self._advance()
            token = self._peek()
        if self._is(TokenKind.KEYWORD, "in"):
            self._advance()
            items = self._list()
            return SIn(left, items, negated, _offset(left), token.offset)
        if self._is(TokenKind.KEYWORD, "between"):
            self._advance()
            low = self._sum()
            if not self._is(TokenKind.KEYWORD, "and"):
                raise self._error(self._peek(), "'between' needs 'and' before its upper bound", expected="'and'")
            self._advance()
            high = self._sum()
            return SBetween(left, low, high, negated, _offset(left), token.offset)
        return left

    def _list(self) -> tuple[Syntax, ...]:
        open_token = self._peek()
        if open_token.kind is not TokenKind.LBRACKET:
            raise self._error(open_token, "'in' must be followed by a list such as [TELLER, ATM]", expected="'['")
        self._advance()
        items: list[Syntax] = []
        while not self._is(TokenKind.RBRACKET):
            items.append(self._sum())
            if self._is(TokenKind.COMMA):
                self._advance()
            elif not self._is(TokenKind.RBRACKET):
                raise self._error(self._peek(), f"expected ',' or ']' in the list, found {_describe(self._peek())}",
                                  expected="',' or ']'")
        self._advance()
        return tuple(items)

    def _sum(self) -> Syntax:
        left = self._product()
        while self._peek().kind is TokenKind.OPERATOR and self._peek().text in ("+", "-"):
            op = self._advance()
            right = self._product()
            left = SBinary(op.text, left, right, _offset(left), op.offset)
        return left

    def _product(self) -> Syntax:
        left = self._unary()
        while self._peek().kind is TokenKind.OPERATOR and self._peek().text in ("*", "/"):
            op = self._advance()
            right = self._unary()
            left = SBinary(op.text, left, right, _offset(left), op.offset)
        return left

    def _unary(self) -> Syntax:
        if self._is(TokenKind.OPERATOR, "-"):
            token = self._advance()
            self._nested()
            operand = self._unary()
            self._depth -= 1
            return SNegate(operand, token.offset)
        if self._is(TokenKind.OPERATOR, "+"):
            # A leading '+' is harmless ("+5"); accept it as written.
            self._advance()
            return self._unary()
        return self._primary()

    def _primary(self) -> Syntax:
        token = self._peek()
        if token.kind is TokenKind.NUMBER:
            self._advance()
            value = float(token.text)
            if not math.isfinite(value):
                raise self._error(token, "this number is too large", expected="a finite number")
            return SNumber(value, token.offset)
        if token.kind is TokenKind.STRING:
            self._advance()
            return SString(token.text, token.offset)
        if token.kind is TokenKind.KEYWORD and token.text in ("true", "false"):
            self._advance()
            return SBool(token.text == "true", token.offset)
        if token.kind is TokenKind.NAME:
            self._advance()
            if self._is(TokenKind.LPAREN):
                self._advance()
                self._nested()
                args: list[Syntax] = []
                while not self._is(TokenKind.RPAREN):
                    args.append(self._or())
                    if self._is(TokenKind.COMMA):
                        self._advance()
                    elif not self._is(TokenKind.RPAREN):
                        raise self._error(
                            self._peek(), f"expected ',' or ')' in the call, found {_describe(self._peek())}",
                            expected="',' or ')'",
                        )
                self._advance()
                self._depth -= 1
                return SCall(token.text, tuple(args), token.offset)
            if self._is(TokenKind.LBRACKET):
                raise self._error(self._peek(), "indexing is not part of the rule language", expected="an operator")
            return SName(token.text, token.offset)
        if token.kind is TokenKind.LPAREN:
            self._advance()
            self._nested()
            inner = self._or()
            self._depth -= 1
            self._expect(TokenKind.RPAREN, "')'")
            return inner
        if token.kind is TokenKind.LBRACKET:
            raise self._error(token, "a list can only follow 'in'", expected="a value")
        raise self._error(token, f"expected a value, found {_describe(token)}",
                          expected="a number, a feature name, a function call or '('")


def _offset(node: Syntax) -> int:
    return node.offset


def parse(text: str) -> Syntax:
    """The syntax tree of ``text``; raises ExpressionSyntaxError with its syntax errors (every one the parser finds by
    resuming at the next 'and', 'or', ',' or closing bracket; at most ``_MAX_ISSUES``), in order of offset."""
    return _Parser(tokenize(text)).parse()
