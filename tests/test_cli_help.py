"""A CLI that explains itself: every option of every command has help text that states its default."""

import argparse

import pytest

from fastdaf.bench_parser import build_parser as build_bench_parser
from fastdaf.cli_parser import build_parser


def commands(parser, name="fastdaf"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from commands(sub, f"{name} {sub_name}")


COMMANDS = {**dict(commands(build_parser())), **dict(commands(build_bench_parser(), "fastdaf-bench"))}


def test_every_command_is_covered():
    assert {
        "fastdaf predict",
        "fastdaf serve",
        "fastdaf extract",
        "fastdaf train",
        "fastdaf eval",
        "fastdaf env",
    } <= set(COMMANDS)
    assert {"fastdaf-bench head", "fastdaf-bench e2e", "fastdaf-bench serve", "fastdaf-bench plot"} <= set(COMMANDS)
    assert len(COMMANDS) == 10 + 5  # each top level and its commands


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help_that_shows_its_default(name):
    parser = COMMANDS[name]
    formatter = parser._get_formatter()
    rendered = " ".join(parser.format_help().split())
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        assert action.help, f"{name} {action.option_strings or action.dest}: no help text"
        if action.option_strings and not action.required:
            text = formatter._get_help_string(action) % {"default": action.default}
            assert "default" in text, f"{name} {action.option_strings}: help does not state the default"
            assert " ".join(text.split()) in rendered
