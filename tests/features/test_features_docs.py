"""docs/features.md carries the catalogue table exactly as generated from CATALOGUE."""

from __future__ import annotations

from pathlib import Path

from features._docs import catalogue_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "features.md"


def test_catalogue_table_in_docs_is_current() -> None:
    """The table between the catalogue markers equals catalogue_markdown() (regenerate the doc if not)."""
    text = DOC.read_text(encoding="utf-8")
    begin, end = "<!-- catalogue:begin -->\n", "<!-- catalogue:end -->"
    table = text[text.index(begin) + len(begin) : text.index(end)]
    assert table == catalogue_markdown()
