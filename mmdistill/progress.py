"""Progress for long loops: a tqdm bar in a terminal, periodic one-line logs elsewhere.

Logs and CI output stay readable (no carriage-return spam) while interactive users see a bar.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def interactive() -> bool:
    return sys.stdout.isatty() and os.environ.get("CI", "").lower() not in ("1", "true", "yes")


def progress(iterable: Iterable[T], desc: str, total: int | None = None,
             every_s: float = 30.0, disable: bool = False) -> Iterator[T]:
    """Yield from `iterable`, showing a bar when interactive, else a line every `every_s` s."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if disable:
        yield from iterable
        return
    if interactive():
        yield from tqdm(iterable, desc=desc, total=total, dynamic_ncols=True)
        return
    start = last = time.monotonic()
    done = 0
    for item in iterable:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            of = f"/{total}" if total else ""
            print(f"[{desc}] {done}{of} ({done / (now - start):.2f}/s)", flush=True)
    print(f"[{desc}] done: {done} in {time.monotonic() - start:.1f}s", flush=True)
