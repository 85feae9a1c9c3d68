"""Checks of typed settings (gin parameters) where they are used, so a wrong value stops the run
with the parameter, the value, its type and a working example, instead of a library's error
steps later (`unsupported operand type(s) for /: 'str' and 'int'` for train.lr='abc').

A leaf: it imports nothing of mmdistill. Each check returns the value, so a caller can write
`lr = check_number('train.lr', lr, above=0)`.
"""
from __future__ import annotations

import ast
import numbers
from typing import Any


class SettingError(ValueError):
    """A setting of the wrong type or outside its range; the message says what to write."""


def _parsed(text: str) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return None


def _a(value: Any) -> str:
    """'a str', 'an int': the value's type with its article."""
    type_name = type(value).__name__
    return f"{'an' if type_name[0] in 'aeiou' else 'a'} {type_name}"


def _wrong_type(name: str, value: Any, kind: str, example: Any, fits) -> SettingError:
    """`kind`: what is expected ('a number'); `example`: a value that works, used unless `value`
    is a quoted form of a value that fits (then that one is suggested: '16' -> 16)."""
    quoted = isinstance(value, str)
    if quoted and fits(_parsed(value)):
        example = _parsed(value)
    return SettingError(f"{name}={value!r} is {_a(value)}; give {kind} such as "
                        f"{name}={example!r}{' (no quotes)' if quoted else ''}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int = 1, optional: bool = False,
              example: int | None = None) -> int | None:
    """A whole number >= `minimum` (None too when `optional`)."""
    if value is None and optional:
        return None
    example = max(minimum, 1) if example is None else example
    kind = ("None or a whole number" if optional else "a whole number")
    if not _is_int(value):
        if _is_number(value) and float(value).is_integer():
            example = int(value)
        raise _wrong_type(name, value, kind, example, _is_int)
    if value < minimum:
        raise SettingError(f"{name}={value!r}: must be an integer >= {minimum}"
                           + (" (or None)" if optional else ""))
    return int(value)


def check_number(name: str, value: Any, minimum: float = 0.0, above: bool = False,
                 optional: bool = False, example: float = 1e-3) -> float | None:
    """A real number >= `minimum` (> when `above`; None too when `optional`)."""
    if value is None and optional:
        return None
    if not _is_number(value):
        kind = "None or a number" if optional else "a number"
        raise _wrong_type(name, value, kind, example, _is_number)
    if value != value or (value <= minimum if above else value < minimum):  # nan fails both
        relation = ">" if above else ">="
        raise SettingError(f"{name}={value!r}: must be a number {relation} {minimum:g}"
                           + (" (or None)" if optional else ""))
    return float(value)


def check_fractions(name: str, value: Any, count: int, example: tuple) -> tuple[float, ...]:
    """`count` numbers in [0, 1) (Adam's betas)."""
    fits = lambda v: (isinstance(v, (tuple, list)) and len(v) == count  # noqa: E731
                      and all(_is_number(x) for x in v))
    if not fits(value):
        raise _wrong_type(name, value, f"{count} numbers", example, fits)
    if not all(0 <= x < 1 for x in value):
        raise SettingError(f"{name}={tuple(value)!r}: each must be in [0, 1), such as "
                           f"{name}={example!r}")
    return tuple(float(x) for x in value)


def check_str(name: str, value: Any, example: str) -> str:
    if not isinstance(value, str):
        raise SettingError(f"{name}={value!r} is {_a(value)}; give a string such as "
                           f"{name}={example!r} (with quotes)")
    return value


class FlagError(ValueError):
    """A command-line flag outside its range; the commands exit with status 2 on it."""


def check_flags(args: Any, ranges: dict[str, tuple[float, float | None]]) -> None:
    """Every flag of `ranges` (`--flag`: (least, most or None)) that the parsed `args` hold, by
    its flag name, before a command does any work; a flag given as several numbers (`--size H W`)
    is checked number by number. Unset flags (None) are not checked."""
    for flag, (least, most) in ranges.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        for number in (value if isinstance(value, (list, tuple)) else [value]):
            if number is None:
                continue
            if number < least or (most is not None and number > most):
                limit = f"between {least} and {most}" if most is not None else f"at least {least}"
                shown = " ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else value
                raise FlagError(f"{flag} {shown}: must be {limit}")
