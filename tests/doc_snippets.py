"""Code blocks of README.md and docs/*.md, for the test that parses every gin snippet.

A block is a fenced one (its info string is its language) or an indented one (4 spaces after a
blank line, outside fences; no language). A gin snippet is a block tagged `gin`. An untagged
block whose first statement looks like a gin binding or include is a gin snippet someone forgot
to tag; the test refuses it, so every gin snippet is tagged and therefore parsed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
# `scope/configurable.param =`, `MACRO =` or `include '...'` at the start of a line.
GIN_STATEMENT = re.compile(r"^(include\s+['\"]|([\w]+/)*[A-Za-z_]\w*\.[A-Za-z_]\w*\s*=[^=]|"
                           r"[A-Z][A-Z0-9_]*\s*=[^=])")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the block's first code line
    language: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence:
            indent, marker, language = fence.groups()
            body, j = [], i + 1
            while j < len(lines) and not lines[j].strip().startswith(marker[:3]):
                body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
                j += 1
            found.append(Block(path, i + 2, language, "\n".join(body)))
            i = j + 1
            continue
        starts_indented = (lines[i].startswith("    ") and lines[i].strip()
                           and (i == 0 or not lines[i - 1].strip()))
        if starts_indented and not _in_list(lines, i):
            body, j = [], i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                body.append(lines[j][4:])
                j += 1
            found.append(Block(path, i + 1, "", "\n".join(body).rstrip()))
            i = j
            continue
        i += 1
    return found


def _in_list(lines: list[str], i: int) -> bool:
    """An indented paragraph continuing a list item is text, not code."""
    for k in range(i - 1, -1, -1):
        if lines[k].strip():
            return bool(re.match(r"^\s*([-*+]|\d+\.)\s", lines[k])) and not lines[k].startswith("    ")
    return False


def looks_like_gin(text: str) -> bool:
    """True when the first line that is not blank or a comment is a gin statement."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return bool(GIN_STATEMENT.match(stripped))
    return False
