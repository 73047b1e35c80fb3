"""`weft` builds the options of the command it runs only (start-up time): what it parses and the help it prints
are those of the whole parser."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from weft.cli.main import build_parser, main

WHOLE = build_parser()
COMMANDS = next(a for a in WHOLE._actions if isinstance(a, argparse._SubParsersAction)).choices


def _printed(parser: argparse.ArgumentParser, args: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        parser.parse_args(args)
    return out.getvalue()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_command_alone_has_the_options_and_help_of_the_whole_parser(name):
    alone = build_parser(name)
    assert _printed(alone, [name, "--help"]) == _printed(WHOLE, [name, "--help"])
    assert _printed(alone, ["--help"]) == _printed(WHOLE, ["--help"])


@pytest.mark.parametrize(
    "args",
    [
        ["run", "f.flow", "-i", "a=1", "--detach", "--workers", "3", "--store", "s"],
        ["show", "RUN", "step", "--steps", "all", "--json"],
        ["list", "--state", "failed", "--state", "paused", "--sort=-ended", "--limit", "5"],
        ["schedule", "add", "nightly", "f.flow", "--cron", "0 3 * * *", "--tz", "Europe/Prague"],
        ["rollback", "RUN", "--force", "--skip-undo", "a"],
    ],
)
def test_a_command_line_parses_alike(args):
    assert build_parser(args[0]).parse_args(args) == WHOLE.parse_args(args)


def test_an_unknown_command_is_refused_with_the_commands_listed(capsys):
    with pytest.raises(SystemExit) as e:
        main(["rn", "f.flow"])
    assert e.value.code == 2 and "invalid choice: 'rn' (choose from 'check', 'plan'," in capsys.readouterr().err
