"""The README documents every command, and CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.core import TyperGroup

from aggregator.cli import app

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def command_paths() -> list[str]:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    paths: list[str] = []
    for name, command in root.commands.items():
        if isinstance(command, TyperGroup):
            paths.extend(f"{name} {sub}" for sub in command.commands)
        else:
            paths.append(name)
    return sorted(paths)


@pytest.mark.parametrize("path", command_paths())
def test_every_command_has_help_and_is_in_the_readme(path: str) -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    command: Any = root
    for part in path.split():
        assert isinstance(command, TyperGroup)
        command = command.commands[part]
    assert command.help, f"kairan {path} has no help"
    group, _, sub = path.partition(" ")
    pattern = rf"kairan {group}" + (rf" [^\n]*{sub}\b" if sub else r"\b")
    assert re.search(pattern, README), f"kairan {path} is not in README.md"


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_quick_start_has_exactly_two_commands() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2
    assert commands[0].endswith("kairan demo")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = quick_start_commands()[1]
    assert test_command.replace("python3", "$PY") in ci
    for tool in ("ruff check", "ruff format --check", "mypy"):
        assert tool in ci
