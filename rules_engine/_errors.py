"""The rule engine's errors, and the structured diagnostic that compile errors carry.

Hierarchy::

    RuleError                     root: catch this to handle any rule-engine failure
    ├── RuleCompileError          a rule file is invalid; ``.errors`` lists every problem found
    ├── RuleCasesError            a rule test-case file is invalid; ``.errors`` lists every problem found
    ├── RuleKernelError           numba could not build or load the compiled kernel (cache directory, numba)
    └── RuleEvaluationError       ``evaluate``/``reason`` got input of the wrong shape or an unknown rule index
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "RuleCasesError",
    "RuleCompileError",
    "RuleDiagnostic",
    "RuleError",
    "RuleEvaluationError",
    "RuleKernelError",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleDiagnostic:
    """One problem in a rule (or cases) file, with where it is and what would fix it.

    ``line`` and ``column`` are 1-based positions in the file; ``rule_id`` is '' for
    problems outside any rule. ``expected``/``got`` describe a mismatch when there is one,
    ``suggestion`` is a close valid name (rendered as "did you mean ...?").
    """

    file: str
    rule_id: str
    line: int
    column: int
    message: str
    expected: str = ""
    got: str = ""
    suggestion: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}: "
        rule = f"rule {self.rule_id}: " if self.rule_id else ""
        hint = f" (did you mean '{self.suggestion}'?)" if self.suggestion else ""
        return f"{where}{rule}{self.message}{hint}"


class RuleError(Exception):
    """Root of every error the rule engine raises."""


class _DiagnosticsError(RuleError):
    """An error that carries every diagnostic found in one file."""

    def __init__(self, errors: list[RuleDiagnostic], *, what: str) -> None:
        self.errors: list[RuleDiagnostic] = list(errors)
        count = len(self.errors)
        lines = "\n".join(str(error) for error in self.errors)
        super().__init__(f"{what} has {count} error{'s' if count != 1 else ''}; fix them and load it again:\n{lines}")


class RuleCompileError(_DiagnosticsError):
    """The rule file was rejected as a whole; ``errors`` holds every problem, in file order."""

    def __init__(self, errors: list[RuleDiagnostic]) -> None:
        super().__init__(errors, what="rule file")


class RuleCasesError(_DiagnosticsError):
    """The rule test-case file is invalid; ``errors`` holds every problem, in file order."""

    def __init__(self, errors: list[RuleDiagnostic]) -> None:
        super().__init__(errors, what="rule cases file")


class RuleKernelError(RuleError):
    """numba failed to compile or load the generated kernel; the message says what to check."""


class RuleEvaluationError(RuleError):
    """A feature matrix or rule index handed to a RuleSet does not fit it; the message says what was expected."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpressionIssue:
    """A problem inside one ``when`` expression, located by character offset into its text.

    Internal: the rule-file reader turns it into a :class:`RuleDiagnostic` with file line and column.
    """

    offset: int
    message: str
    expected: str = ""
    got: str = ""
    suggestion: str = ""


class ExpressionSyntaxError(Exception):
    """Internal: raised by the lexer (at the first bad character) and the parser (with every syntax error it finds:
    it resumes after each at the next 'and', 'or', ',' or closing bracket). ``issue`` is the first of ``issues``."""

    def __init__(self, issues: ExpressionIssue | list[ExpressionIssue], *, recoverable: bool = True) -> None:
        self.issues = [issues] if isinstance(issues, ExpressionIssue) else list(issues)
        super().__init__("; ".join(issue.message for issue in self.issues))
        self.issue = self.issues[0]
        self.recoverable = recoverable  # False: the parser must not resume after it (nesting too deep)
