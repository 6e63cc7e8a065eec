"""Reading YAML with positions: rule and case files are composed into nodes so that every
diagnostic can name the line and column it is about, down to a character inside a ``when``.

Only the safe YAML schema is used: no tags are constructed beyond plain scalars, lists and maps.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rules_engine._errors import RuleDiagnostic

__all__ = ["MappingNode", "Node", "ScalarNode", "SequenceNode", "YamlSource", "describe_node"]

_WHITESPACE = frozenset(" \t\r\n")
# libyaml's safe loader when PyYAML was built with it (the wheels are), else the pure-Python one.
_FAST_LOADER = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
# Tags the safe schema resolves plain YAML to; anything else (e.g. !!python/...) is refused.
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq")
)


def _nodes(root: Node | None) -> list[Node]:
    # Aliases share nodes; visiting each once keeps "billion laughs" files cheap.
    found: list[Node] = []
    seen: set[int] = set()
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        found.append(node)
        if isinstance(node, MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
    return found


@dataclass(frozen=True, slots=True)
class YamlSource:
    """A YAML text and its file name, with helpers that turn nodes into values and positions."""

    text: str
    file: str
    line_starts: tuple[int, ...]

    @classmethod
    def of(cls, text: str, file: str) -> YamlSource:
        """Index ``text`` for positions."""
        starts = [0]
        starts.extend(i + 1 for i, ch in enumerate(text) if ch == "\n")
        return cls(text=text, file=file, line_starts=tuple(starts))

    # -- composition -----------------------------------------------------------------------
    def compose(self) -> tuple[Node | None, list[RuleDiagnostic]]:
        """The root node, or the problems that prevent reading it (a syntax error, or explicit tags)."""
        try:
            # libyaml's composer is about 8x faster (the shipped pack: 5 against 40 ms) and gives the same nodes and
            # positions; a text it refuses is read again by the pure-Python one, whose messages the diagnostics use.
            return self._checked(yaml.compose(self.text, Loader=_FAST_LOADER))
        except yaml.YAMLError:
            pass
        try:
            root = yaml.compose(self.text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
            problem = error.problem or "invalid YAML"
            context = f" ({error.context})" if error.context else ""
            return None, [RuleDiagnostic(
                file=self.file, rule_id="", line=line, column=column,
                message=f"YAML syntax error: {problem}{context}", expected="valid YAML",
            )]
        except yaml.YAMLError as error:
            return None, [RuleDiagnostic(
                file=self.file, rule_id="", line=1, column=1, message=f"YAML error: {error}", expected="valid YAML"
            )]
        return self._checked(root)

    def _checked(self, root: Node | None) -> tuple[Node | None, list[RuleDiagnostic]]:
        problems = [
            self.diagnostic(node, "", f"YAML tag {node.tag!r} is not allowed; write plain values, lists and mappings",
                            expected="plain YAML", got=node.tag)
            for node in _nodes(root)
            if node.tag not in _PLAIN_TAGS
        ]
        return (None, problems) if problems else (root, [])

    # -- positions -------------------------------------------------------------------------
    def position_of_index(self, index: int) -> tuple[int, int]:
        """1-based (line, column) of a character index into the text."""
        line = bisect.bisect_right(self.line_starts, index) - 1
        return line + 1, index - self.line_starts[line] + 1

    def position(self, node: Node) -> tuple[int, int]:
        """1-based (line, column) where ``node`` starts."""
        return node.start_mark.line + 1, node.start_mark.column + 1

    def char_positions(self, node: ScalarNode) -> list[tuple[int, int]]:
        """The file position of every character of the scalar's value, plus one for its end.

        The value is aligned with the raw text of the node: every non-blank character of the
        value is found, in order, in the raw text (block scalars after their header line,
        quoted scalars after the opening quote). Falls back to the node's start when an
        escape sequence breaks the alignment.
        """
        value: str = node.value
        start, end = node.start_mark.index, node.end_mark.index
        raw = self.text[start:end]
        cursor = 0
        if node.style in ("|", ">"):
            cursor = raw.find("\n") + 1
        elif node.style in ("'", '"'):
            cursor = 1
        positions: list[tuple[int, int]] = []
        fallback = self.position(node)
        for ch in value:
            if ch in _WHITESPACE:
                positions.append(self.position_of_index(start + min(cursor, max(len(raw) - 1, 0))))
                continue
            found = raw.find(ch, cursor)
            if found < 0:
                positions.append(fallback)
                continue
            positions.append(self.position_of_index(start + found))
            cursor = found + 1
        positions.append(self.position_of_index(start + min(cursor, len(raw))))
        return positions

    # -- values ----------------------------------------------------------------------------
    def scalar(self, node: Node) -> object:
        """The Python value of a scalar node (str, int, float, bool or None)."""
        return SafeConstructor().construct_object(node, deep=True)

    def diagnostic(
        self, node: Node | tuple[int, int], rule_id: str, message: str, *,
        expected: str = "", got: str = "", suggestion: str = "",
    ) -> RuleDiagnostic:
        """A diagnostic at a node (or at an explicit (line, column))."""
        line, column = node if isinstance(node, tuple) else self.position(node)
        return RuleDiagnostic(
            file=self.file, rule_id=rule_id, line=line, column=column, message=message,
            expected=expected, got=got, suggestion=suggestion,
        )


def describe_node(node: Node) -> str:
    """How a message names a YAML node's kind."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag.endswith(":null"):
        return "nothing"
    if node.tag.endswith(":str"):
        return "text"
    if node.tag.endswith(":bool"):
        return "true/false"
    return "a number" if node.tag.endswith((":int", ":float")) else "a value"

