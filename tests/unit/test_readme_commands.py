"""Every shell command README.md shows starts as written (``--help``, a dry run, or a quick run).

How each kind of command is checked, and why some are only asked for ``--help``, is the table in
``tests/readme_commands.py``; a README command it does not recognise fails here.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.readme_commands import ROOT, Command, Runner, UnknownCommand, extract_commands, plan

README = ROOT / "README.md"
COMMANDS = extract_commands(README.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runner():
    r = Runner(ROOT)
    yield r
    r.close()


@pytest.fixture(scope="module")
def readme_problems(runner):
    """README command -> its problems, all checked at once (each distinct call runs once)."""
    def check(command):
        try:
            checks = plan(command)
        except UnknownCommand as e:
            return [f"not recognised: {e}"]
        return [p for c in checks for p in runner.problems(c)]
    with ThreadPoolExecutor(max(1, len(COMMANDS))) as pool:
        return dict(zip(COMMANDS, pool.map(check, COMMANDS)))


def test_extracts_the_commands_the_readme_shows():
    texts = [c.text for c in COMMANDS]
    for expected in ("make serve", "make test", "make bench", "make serve-shared",
                     ".venv/bin/python -m pipeline run --data /path/to/dataset",
                     ".venv/bin/python -m app.access.auth add-user alice --role maintainer",
                     "apt-get install redis-server"):
        assert expected in texts
    celery = next(t for t in texts if "celery -A" in t)
    assert celery.startswith("FAXPLAINER_CONFIG=configs/shared.yaml FAXPLAINER_REDIS_URL=")
    assert celery.endswith("-n embed@%h")  # the backslash continuation is joined


def test_every_readme_command_is_recognised():
    unknown = []
    for command in COMMANDS:
        try:
            plan(command)
        except UnknownCommand as e:
            unknown.append(f"README.md:{command.line}: {e}")
    assert not unknown, "\n".join(unknown)


@pytest.mark.parametrize("command", COMMANDS, ids=[f"L{c.line}:{c.text[:60]}" for c in COMMANDS])
def test_readme_command_starts(command, readme_problems):
    problems = readme_problems[command]
    assert not problems, f"README.md:{command.line} `{command.text}`:\n" + "\n".join(problems)


# --- the extractor and the checker can fail --------------------------------------------------

PLANTED = """\
Intro with `make serve` inline and `meta.json`, `redis-server` and `--url` (no commands).

```bash
make test      # a comment
# only a comment
FOO=1 scripts/serve_shared.sh --config configs/shared.yaml \\
  --run RUN_ID
```

```
app/        a layout listing, not commands
bench/      benchmarks
```

    .venv/bin/python -m pipeline info RUN
    frobnicate --all

- a list item
  continued with two spaces: `python bench/embed.py --quick`, and a span over a line break: `make
  bench-full`
"""


def test_extractor_finds_exactly_the_planted_commands():
    assert [(c.text, c.line) for c in extract_commands(PLANTED)] == [
        ("make serve", 1),
        ("make test", 4),
        ("FOO=1 scripts/serve_shared.sh --config configs/shared.yaml --run RUN_ID", 6),
        (".venv/bin/python -m pipeline info RUN", 15),
        ("frobnicate --all", 16),
        ("python bench/embed.py --quick", 19),
        ("make bench-full", 19),
    ]


@pytest.mark.parametrize("text", [
    "frobnicate --all",                               # an unknown program
    ".venv/bin/python -m pipeline explode",           # an unknown subcommand
    ".venv/bin/python -m somewhere.else --help",      # an unknown module
    "scripts/no_such_script.sh",                      # a script not in the table
    "rm -rf runs",                                    # a recipe utility outside a recipe
    ".venv/bin/celery -A app.jobs.celery_app:celery beat",  # a celery command not in the table
])
def test_unknown_commands_are_refused(text):
    with pytest.raises(UnknownCommand):
        plan(Command(text, 1))


def test_a_recipe_utility_is_known_inside_a_recipe():
    assert [c.how for c in plan("test -x .venv/bin/python || python3 -m venv .venv", in_recipe=True)] \
        == ["none", "help"]


@pytest.mark.parametrize("text, problem", [
    (".venv/bin/python bench/no_such_bench.py", "no such file"),
    (".venv/bin/python -m bench.no_such_bench --quick", "bench/no_such_bench.py: no such file"),
    (".venv/bin/python -m pipeline run --no-such-option 3", "option --no-such-option is not in the help"),
    (".venv/bin/python -m pipeline run --config configs/missing.yaml", "configs/missing.yaml: no such file"),
    ("make no-such-target", "exited with 2"),
])
def test_broken_commands_are_caught(runner, text, problem):
    problems = [p for c in plan(Command(text, 1)) for p in runner.problems(c)]
    assert any(problem in p for p in problems), problems


def test_a_make_recipe_is_checked_line_by_line(runner, tmp_path):
    (tmp_path / "Makefile").write_text("good:\n\ttrue\nbad:\n\ttrue && frobnicate --all\n")
    local = Runner(tmp_path)
    try:
        assert local.problems(plan("make good")[0]) == []
        bad = local.problems(plan("make bad")[0])
    finally:
        local.close()
    assert len(bad) == 1 and "recipe line not recognised" in bad[0] and "frobnicate" in bad[0]
