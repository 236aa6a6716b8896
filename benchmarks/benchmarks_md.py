"""Shared by the benchmark scripts: replace (or append) one section of BENCHMARKS.md."""

from __future__ import annotations

import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def write_section(title: str, text: str) -> None:
    """Put ``text`` (which starts with the ``title`` heading) in place of that section."""
    current = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"{re.escape(title)}\n.*?(?=\n+## |\s*\Z)", re.S)
    if pattern.search(current):
        # A function replacement keeps backslashes in the text literal.
        current = pattern.sub(lambda _: text.rstrip("\n"), current)
    else:
        current = current.rstrip("\n") + "\n\n" + text.rstrip("\n")
    BENCHMARKS.write_text(current.rstrip("\n") + "\n")
