"""The catalogue rendered as the Markdown table in docs/features.md (a test keeps the two identical)."""

from __future__ import annotations

from features._catalogue import CATALOGUE

__all__ = ["catalogue_markdown"]


def catalogue_markdown() -> str:
    """One row per feature, in column order: index, name, kind, unit, meaning (en / zh), how it is computed."""
    lines = [
        "| # | name | kind | unit | meaning | 含义 | computed |",
        "|---|------|------|------|---------|------|----------|",
    ]
    for index, spec in enumerate(CATALOGUE):
        kind = spec.kind.value + (f" ({spec.enum})" if spec.enum else "")
        cells = [str(index), f"`{spec.name}`", kind, spec.unit, spec.description_en, spec.description_zh, spec.computed]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
