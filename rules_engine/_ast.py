"""Stage 2: the typed AST of a ``when`` expression; every node knows its result type.

Built by ``_checks`` from the syntax tree once every name is resolved against the feature
catalogue. All values are float64 at run time: numbers as themselves, booleans as 0/1,
enum members as their catalogue number; the types keep them apart at compile time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from features import FeatureKind

__all__ = [
    "BOOL",
    "FUNCTIONS",
    "NUMBER",
    "Arithmetic",
    "Between",
    "Boolean",
    "Call",
    "Compare",
    "EnumMember",
    "Expr",
    "Feature",
    "InList",
    "Logical",
    "Negate",
    "Not",
    "Number",
    "ValueType",
    "children",
    "features_used",
    "walk",
]


@dataclass(frozen=True, slots=True)
class ValueType:
    """The static type of an expression: a number, a condition, or a member of one named enum."""

    kind: str  # "number" | "bool" | "enum"
    enum: str = ""

    def describe(self) -> str:
        """How messages name this type."""
        if self.kind == "number":
            return "a number"
        if self.kind == "bool":
            return "a condition (true/false)"
        return f"a {self.enum} value"


NUMBER = ValueType("number")
BOOL = ValueType("bool")

# Functions of the language: name -> (fewest, most) arguments. All take and return numbers.
FUNCTIONS: dict[str, tuple[int, int]] = {
    "abs": (1, 1),
    "clip": (3, 3),
    "log1p": (1, 1),
    "max": (2, 8),
    "min": (2, 8),
    "sqrt": (1, 1),
}


@dataclass(frozen=True, slots=True)
class Number:
    """A numeric constant."""

    value: float
    offset: int

    @property
    def type(self) -> ValueType:
        return NUMBER


@dataclass(frozen=True, slots=True)
class Boolean:
    """``true`` or ``false`` (only survives where a comparison with a boolean feature needs it)."""

    value: bool
    offset: int

    @property
    def type(self) -> ValueType:
        return BOOL


@dataclass(frozen=True, slots=True)
class Feature:
    """A column of the feature matrix."""

    name: str
    index: int
    kind: FeatureKind
    enum: str
    nonnegative: bool
    offset: int

    @property
    def type(self) -> ValueType:
        if self.kind is FeatureKind.BOOL:
            return BOOL
        if self.kind is FeatureKind.ENUM:
            return ValueType("enum", self.enum)
        return NUMBER


@dataclass(frozen=True, slots=True)
class EnumMember:
    """An enum member such as ``TELLER``, resolved against the enum of the feature it is compared with."""

    enum: str
    member: str
    value: int
    offset: int

    @property
    def type(self) -> ValueType:
        return ValueType("enum", self.enum)


@dataclass(frozen=True, slots=True)
class Negate:
    """``-operand``."""

    operand: Expr
    offset: int

    @property
    def type(self) -> ValueType:
        return NUMBER


@dataclass(frozen=True, slots=True)
class Arithmetic:
    """``left op right`` with op in ``+ - * /``."""

    op: str
    left: Expr
    right: Expr
    offset: int

    @property
    def type(self) -> ValueType:
        return NUMBER


@dataclass(frozen=True, slots=True)
class Call:
    """A call of one of ``FUNCTIONS``."""

    function: str
    args: tuple[Expr, ...]
    offset: int

    @property
    def type(self) -> ValueType:
        return NUMBER


@dataclass(frozen=True, slots=True)
class Compare:
    """``left op right``: numbers with any comparison, enums and conditions with ``==``/``!=``."""

    op: str
    left: Expr
    right: Expr
    offset: int

    @property
    def type(self) -> ValueType:
        return BOOL


@dataclass(frozen=True, slots=True)
class InList:
    """``operand [not] in [values]`` with the values already turned into numbers."""

    operand: Expr
    values: tuple[float, ...]
    negated: bool
    offset: int

    @property
    def type(self) -> ValueType:
        return BOOL


@dataclass(frozen=True, slots=True)
class Between:
    """``operand [not] between low and high``, both ends included."""

    operand: Expr
    low: Expr
    high: Expr
    negated: bool
    offset: int

    @property
    def type(self) -> ValueType:
        return BOOL


@dataclass(frozen=True, slots=True)
class Logical:
    """``and``/``or`` over two or more conditions, evaluated left to right with short-circuit."""

    op: str
    operands: tuple[Expr, ...]
    offset: int

    @property
    def type(self) -> ValueType:
        return BOOL


@dataclass(frozen=True, slots=True)
class Not:
    """``not operand``."""

    operand: Expr
    offset: int

    @property
    def type(self) -> ValueType:
        return BOOL


Expr = Number | Boolean | Feature | EnumMember | Negate | Arithmetic | Call | Compare | InList | Between | Logical | Not


def children(node: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of ``node``."""
    match node:
        case Negate(operand=operand) | Not(operand=operand) | InList(operand=operand):
            return (operand,)
        case Arithmetic(left=left, right=right) | Compare(left=left, right=right):
            return (left, right)
        case Call(args=args):
            return args
        case Between(operand=operand, low=low, high=high):
            return (operand, low, high)
        case Logical(operands=operands):
            return operands
        case _:
            return ()


def walk(node: Expr) -> Iterator[Expr]:
    """``node`` and every node below it, parents first."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(children(current)))


def features_used(node: Expr) -> frozenset[str]:
    """Names of the features ``node`` reads."""
    return frozenset(n.name for n in walk(node) if isinstance(n, Feature))
