"""Tests of ``cloud_tasks.cli``: one handler name across command modules, and errors as one line with exit status 2."""

from __future__ import annotations

import pytest

from cloud_tasks.cli import build_parser, main

# The sub-commands of the modules that already follow the one-name rule, with minimal valid arguments.
COMMANDS = {
    "discover": ["discover", "--file-list", "list.txt"],
    "extract": ["extract", "a.zip", "out"],
    "sst-comp": ["sst-comp", "matchups.csv", "masks", "out"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_handler_is_named_run_cli(command):
    args = build_parser().parse_args(COMMANDS[command])
    assert args.func.__name__ == "run_cli"
    assert args.func.__module__.startswith("cloud_tasks.")


def test_error_is_one_line_and_exit_status_2(tmp_path, capsys):
    status = main(["discover", str(tmp_path), "--start", "yesterday", "--end", "2017-03-16"])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err == (
        "error: --start: invalid time 'yesterday': expected YYYY-MM-DD or an ISO datetime (e.g. 2017-03-15T11:34:20Z)\n"
    )
    assert captured.out == ""


def test_success_is_exit_status_0(tmp_path, capsys):
    (tmp_path / "archive").mkdir()
    assert main(["discover", str(tmp_path / "archive"), "--start", "2017-03-15", "--end", "2017-03-16"]) == 0
    assert capsys.readouterr().out == ""  # no product in an empty archive


def test_usage_errors_stay_argparse_errors(capsys):
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err
