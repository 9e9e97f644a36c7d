"""The command-line option types and parser classes both commands use (`fastdaf` and `fastdaf-bench`), so that an
option means the same thing in each and neither imports the other: argparse reports a bad value as "argument
--name: message" with exit code 2, before any work."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any


def device_option(value: str) -> str:
    """--device of every command that runs a model: auto, cpu, cuda or cuda:N."""
    if value in ("auto", "cpu") or re.fullmatch(r"cuda(:\d+)?", value):
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is not a device; use cpu, cuda or cuda:N (or auto)")


def _checked(value: str, convert: Callable[[str], Any], ok: Callable[[Any], bool], accepted: str) -> Any:
    try:
        number = convert(value)
    except ValueError:
        number = None
    if number is None or not ok(number):  # a NaN fails every comparison, so it is refused too
        raise argparse.ArgumentTypeError(f"{value!r} is not accepted; give {accepted}")
    return number


def positive_int(value: str) -> int:
    return _checked(value, int, lambda n: n >= 1, "an integer >= 1")


def non_negative(value: str) -> float:
    return _checked(value, float, lambda n: 0 <= n < float("inf"), "a finite number >= 0")


def fraction(value: str) -> float:
    return _checked(value, float, lambda n: 0.0 <= n < 1.0, "a number in [0, 1)")


class HelpWithDefaults(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already states it (in words, where a bare value
    would not explain it, e.g. "default: the bundled model"). Flags show "default: off"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.required or "default" in text or action.default is argparse.SUPPRESS:
            return text
        if action.default is None:
            return f"{text} (default: not given)"
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return f"{text} (default: {'on' if action.default else 'off'})"
        return f"{text} (default: %(default)s)"


class CommandParser(argparse.ArgumentParser):
    """The parser of each command: help that shows every default."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpWithDefaults)
        super().__init__(*args, **kwargs)
