"""The README's production command, as the benchmarks and the fault drills run it.

The README's Production section shows one ``gunicorn artifacts_project.wsgi`` command; what
``benchmarks/api.py`` measures and what ``tests/drills`` prove holds for that command only if
they run it, not a copy that drifts. Both read it from the README here.
"""

import re
import shlex
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
ASSIGNMENT = re.compile(r"([A-Z_]+)=(\S*)")


def gunicorn_command(
    readme: Path = README, *, workers: int | None = None, bind: str = "127.0.0.1:0"
) -> tuple[dict[str, str], list[str]]:
    """The README's gunicorn command (continuation lines joined): the environment it sets
    before it (``DATABASE_CONN_MAX_AGE=60 ...``) and its words, run with this Python's
    gunicorn, bound to ``bind`` (port 0: the kernel picks a free one) and, with ``workers``,
    that many workers. Every other option is the README's. ValueError when the README has no
    such command, or more than one, or one without ``--workers`` or ``--bind``."""
    text = readme.read_text().replace("\\\n", " ")
    command_line = re.compile(r"(?:[A-Z_]+=\S*\s+)*gunicorn artifacts_project\.wsgi\s")
    lines = [line.strip() for line in text.splitlines() if command_line.match(line.strip())]
    if len(lines) != 1:
        raise ValueError(f"README.md should show one production gunicorn command, found {len(lines)}: {lines}")
    words = shlex.split(lines[0])
    env = {}
    while words and (assignment := ASSIGNMENT.fullmatch(words[0])):
        env[assignment[1]] = assignment[2]
        words.pop(0)
    command = [sys.executable, "-m", *words]
    for option, value in (("--workers", workers), ("--bind", bind)):
        if option not in command:
            raise ValueError(f"the README's gunicorn command has no {option}: {lines[0]}")
        if value is not None:
            command[command.index(option) + 1] = str(value)
    return env, command
