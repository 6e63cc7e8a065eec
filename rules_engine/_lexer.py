"""Stage 1a: split the text of a ``when`` expression into tokens, each with its character offset.

The lexer accepts only the characters the rule language uses; anything else (attribute
access, indexing outside ``in [...]``, Python operators) stops here with a message that
names the rule-language spelling when there is one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from rules_engine._errors import ExpressionIssue, ExpressionSyntaxError

__all__ = ["KEYWORDS", "Token", "TokenKind", "tokenize"]


class TokenKind(enum.Enum):
    """What a token is."""

    NUMBER = "number"
    STRING = "string"
    NAME = "name"
    KEYWORD = "keyword"
    OPERATOR = "operator"
    LPAREN = "("
    RPAREN = ")"
    LBRACKET = "["
    RBRACKET = "]"
    COMMA = ","
    END = "end of expression"


# Keywords are matched case-insensitively and stored lower-case.
KEYWORDS = frozenset({"and", "or", "not", "in", "between", "true", "false"})

_PUNCTUATION = {
    "(": TokenKind.LPAREN,
    ")": TokenKind.RPAREN,
    "[": TokenKind.LBRACKET,
    "]": TokenKind.RBRACKET,
    ",": TokenKind.COMMA,
}
_TWO_CHAR_OPERATORS = {"==", "!=", "<=", ">="}
_ONE_CHAR_OPERATORS = {"<", ">", "+", "-", "*", "/"}

# Spellings from other languages that analysts type by habit, with the rule-language form.
_FOREIGN = {
    "&&": ("'&&' is not an operator", "and"),
    "||": ("'||' is not an operator", "or"),
    "<>": ("'<>' is not an operator", "!="),
    "**": ("there is no power operator", ""),
    "//": ("there is no integer division", "/"),
}
_FOREIGN_CHAR = {
    "=": ("'=' is not a comparison", "=="),
    "!": ("'!' is not an operator", "not"),
    "&": ("'&' is not an operator", "and"),
    "|": ("'|' is not an operator", "or"),
    "%": ("there is no modulo operator", ""),
    ".": ("attribute access is not part of the rule language", ""),
    "{": ("braces are not part of the rule language", ""),
    "}": ("braces are not part of the rule language", ""),
    ";": ("';' is not part of the rule language", ""),
    ":": ("':' is not part of the rule language", ""),
    "@": ("'@' is not part of the rule language", ""),
    "^": ("there is no power operator", ""),
    "~": ("'~' is not an operator", "not"),
    "`": ("backquotes are not part of the rule language", ""),
    "\\": ("backslashes are not part of the rule language", ""),
    "#": ("comments are not allowed inside an expression; put them in the YAML", ""),
}


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its text (keywords lower-cased, strings unquoted) and its offset."""

    kind: TokenKind
    text: str
    offset: int


def _fail(
    offset: int, message: str, *, expected: str = "", got: str = "", suggestion: str = ""
) -> ExpressionSyntaxError:
    return ExpressionSyntaxError(
        ExpressionIssue(offset=offset, message=message, expected=expected, got=got, suggestion=suggestion)
    )


def _is_name_start(ch: str) -> bool:
    return ch == "_" or ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _is_name_char(ch: str) -> bool:
    return _is_name_start(ch) or ("0" <= ch <= "9")


def _read_number(text: str, start: int) -> tuple[str, int]:
    """Digits with optional '_' separators, an optional fraction and an optional exponent."""
    i = start
    n = len(text)

    def digits(i: int) -> int:
        begin = i
        while i < n and ((text[i].isdigit() and text[i].isascii()) or (text[i] == "_" and i > begin)):
            i += 1
        if i > begin and text[i - 1] == "_":
            raise _fail(i - 1, "a number cannot end with '_'", expected="a digit after '_'")
        return i

    i = digits(i)
    if i < n and text[i] == ".":
        if i + 1 < n and text[i + 1].isdigit():
            i = digits(i + 1)
        else:
            raise _fail(i, "a decimal point must be followed by digits", expected="a digit", got=text[i : i + 1])
    if i < n and text[i] in "eE":
        j = i + 1
        if j < n and text[j] in "+-":
            j += 1
        if j < n and text[j].isdigit():
            i = digits(j)
        else:
            raise _fail(i, "an exponent must be followed by digits", expected="a digit")
    if i < n and _is_name_start(text[i]):
        raise _fail(i, "a number must not run into a name; put a space or an operator between them", got=text[i])
    return text[start:i].replace("_", ""), i


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    end = text.find(quote, start + 1)
    if end < 0:
        raise _fail(start, "this string is not closed", expected=f"a closing {quote}")
    value = text[start + 1 : end]
    if "\\" in value:
        raise _fail(start, "strings cannot contain backslashes")
    return value, end + 1


def tokenize(text: str) -> list[Token]:
    """All tokens of ``text`` followed by an END token; raises ExpressionSyntaxError at the first bad character."""
    tokens: list[Token] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch.isdigit() and ch.isascii():
            value, end = _read_number(text, i)
            tokens.append(Token(TokenKind.NUMBER, value, i))
            i = end
            continue
        if ch == "." and i + 1 < n and text[i + 1].isdigit():
            raise _fail(i, "write a leading zero before a decimal point", suggestion="0" + text[i : i + 4].strip())
        if _is_name_start(ch):
            end = i + 1
            while end < n and _is_name_char(text[end]):
                end += 1
            word = text[i:end]
            if word.lower() in KEYWORDS:
                tokens.append(Token(TokenKind.KEYWORD, word.lower(), i))
            else:
                tokens.append(Token(TokenKind.NAME, word, i))
            i = end
            continue
        if ch in "'\"":
            value, end = _read_string(text, i)
            tokens.append(Token(TokenKind.STRING, value, i))
            i = end
            continue
        pair = text[i : i + 2]
        if pair in _TWO_CHAR_OPERATORS:
            tokens.append(Token(TokenKind.OPERATOR, pair, i))
            i += 2
            continue
        if pair in _FOREIGN:
            message, suggestion = _FOREIGN[pair]
            raise _fail(i, message, got=pair, suggestion=suggestion)
        if ch in _ONE_CHAR_OPERATORS:
            tokens.append(Token(TokenKind.OPERATOR, ch, i))
            i += 1
            continue
        if ch in _PUNCTUATION:
            tokens.append(Token(_PUNCTUATION[ch], ch, i))
            i += 1
            continue
        if ch in _FOREIGN_CHAR:
            message, suggestion = _FOREIGN_CHAR[ch]
            raise _fail(i, message, got=ch, suggestion=suggestion)
        raise _fail(i, f"unexpected character {ch!r}", got=ch)
    tokens.append(Token(TokenKind.END, "", n))
    return tokens
