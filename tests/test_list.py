"""`trickbench list <kind>`: every registered entry with its one-line definition; an unknown kind is bad
input (exit 2, one line naming the valid kinds).

The CLI runs as a subprocess for the exit-code contract (each start imports torch, about 2-4 s, so only
a few kinds go that way) and in process, through the same `main`, for every kind.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trickbench.catalog import registry
from trickbench.cli import main

KINDS = {"activations": "activation", "initializers": "initializer", "regularizers": "regularizer",
         "augmentations": "augmentation", "models": "model", "optimizers": "optimizer", "schedules": "schedule",
         "preprocessings": "preprocessing", "sources": "source"}
TRICKBENCH = Path(sys.executable).parent / "trickbench"


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([str(TRICKBENCH), *args], capture_output=True, text=True, timeout=120, env=env)


def assert_lists_every_entry(stdout: str, kind: str) -> None:
    lines = stdout.splitlines()
    entries = list(registry(kind))
    assert len(lines) == len(entries) > 0
    for line, entry in zip(lines, entries):
        name, _, description = line.partition("  ")
        assert name == entry.name
        assert description.strip() == " ".join(entry.description.split()) != ""


@pytest.mark.parametrize("kind", ["activations", "sources"])
def test_list_as_a_subprocess(kind: str) -> None:
    done = cli("list", kind)
    assert done.returncode == 0, done.stderr
    assert_lists_every_entry(done.stdout, KINDS[kind])


def test_unknown_kind_as_a_subprocess() -> None:
    done = cli("list", "tricks")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert "'tricks'" in done.stderr
    for kind in KINDS:
        assert kind in done.stderr


@pytest.mark.parametrize("kind", [*KINDS, *KINDS.values()])
def test_list_every_kind(kind: str, capsys) -> None:
    assert main(["list", kind]) == 0
    out = capsys.readouterr().out
    assert_lists_every_entry(out, KINDS.get(kind, kind))


def test_help_of_the_command_and_of_every_subcommand_prints(capsys):
    """argparse formats help with %: a bare '%' in one subcommand's help broke `trickbench --help`."""
    import argparse

    from trickbench.cli import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    top = capsys.readouterr().out
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in subcommands.items():
        assert name in top
        assert sub.format_help().startswith("usage:")
