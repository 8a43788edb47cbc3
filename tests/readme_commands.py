"""The shell commands README.md shows: find them, recognise each one, check that it can start.

``extract_commands`` finds the commands of a Markdown text: every line of a shell-tagged fenced
block (```` ```bash ````) or of a 4-space indented block, and every inline code span or line of an
untagged fenced block whose first word is a program (``make``, ``python``, ``.venv/bin/...``,
``scripts/...``, ``bench/...``). ``plan`` turns one command into the checks that show it starts
without doing its work, from the table of the commands this project knows (``PYTHON_MODULES``,
``BENCH_SCRIPT`` / ``BENCH_MODULE``, ``SCRIPTS``, ``CELERY``, ``NOT_RUN``). A command outside the
table raises ``UnknownCommand``, so a new README command cannot go unchecked: it must be added to
the table, with the reason it is checked the way it is. ``Runner.problems`` runs the checks:

* ``help``: the program (module and subcommand) answers ``--help`` with status 0 and a usage text,
  every option the README gives it appears in that help (or in the program's top-level help), and
  every repository file it names exists;
* ``run``: the command itself, as written, for the few that are quick and harmless;
* ``make``: ``make -n -B TARGET`` (a dry run that prints every recipe line) succeeds, and each line
  of the recipe is planned and checked the same way;
* ``none``: recognised and deliberately not run (system package installs, CI's entry point, shell
  utilities inside a recipe); a program it names by path must exist.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SHELL_FENCES = {"bash", "sh", "shell", "console", "zsh"}
# First words that make an inline code span (or a line of an untagged fenced block) a command.
PROGRAM_WORDS = {"make", "python", "python3", "pip", "pip3", "celery", "gunicorn", "pytest",
                 "apt-get", "apt", "sudo", "bash", "sh", "git", "docker", "npm", "curl", "wget"}
PROGRAM_PATH = re.compile(r"^(\.venv/bin/|scripts/|\.ci/|\./|bench/\S+\.py$)")

# --- what this project's commands are, and why each is checked the way it is -------------------
# A module either has no subcommands (a reason string) or a dict: subcommand -> reason. The reason
# says why the command is only checked with --help, unless RUN_AS_WRITTEN lists it.
PYTHON_MODULES: dict[str, str | dict[str, str]] = {
    "pipeline": {
        "run": "embeds a data set and trains the models: minutes",
        "info": "needs an existing run (the README shows a placeholder id)",
        "apply": "needs an existing run, and embeds the new images: minutes",
        "matrix": "needs an existing run with two or more generators",
        "probe": "needs an existing run, and re-encodes and scores its held-out images: minutes",
        "compare": "needs two existing runs",
        "findings": "needs an existing run with notes",
        "atlas": "needs an existing run, and computes the maps of 64 held-out images: minutes",
        "demo-data": "builds 800 images into the repository: minutes",
    },
    "app": "serves the app until stopped",
    "app.access.auth": {
        "add-user": "writes the users file and asks for a password",
        "remove-user": "changes the users file",
        "set-role": "changes the users file",
        "list": "only reads the users file",
    },
    "app.jobs.celery_app": {
        "embed": "needs Redis and embedding workers",
        "recover": "needs Redis",
    },
    "app.shared.stack": "starts Redis, Celery workers and gunicorn until stopped",
    "app.files.cell_grids": "needs an existing run, and makes all its grids: minutes",
    "pytest": "the test suite itself (this test is part of it)",
    "pip": {"install": "installs packages into the virtual environment"},
    "venv": "creates a virtual environment",
}
BENCH_SCRIPT = re.compile(r"^bench/[a-z0-9_]+\.py$")
BENCH_MODULE = re.compile(r"^bench\.[a-z0-9_]+$")
BENCH_REASON = "a benchmark: minutes even with --quick; `make bench` runs them all"
SCRIPTS = {"scripts/serve_shared.sh": "starts Redis, Celery workers and gunicorn until stopped"}
CELERY = {"worker": "needs Redis; serves jobs until stopped"}
NOT_RUN = {
    "apt-get": "installs system packages (needs root and the network)",
    "export": "sets an environment variable for the commands that follow (a path of the reader's)",
    ".ci/run": "CI's entry point: installs system packages, then runs `make test` (checked here)",
}
RECIPE_UTILITIES = {"test", "touch", "rm", "mkdir", "true", "echo", "cd"}
# (module, subcommand) -> the environment it runs in: quick and harmless, so run as written.
RUN_AS_WRITTEN = {("app.access.auth", "list"): {"FAXPLAINER_USERS_FILE": os.devnull}}  # an empty users file

REPO_FILE = re.compile(r"^(?!/)[\w.\-/]+\.(ya?ml|py|sh|txt|toml|cfg|csv)$")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SEPARATORS = {"&&", "||", ";", "|"}


class UnknownCommand(ValueError):
    """A command that none of the patterns this module knows matches."""


@dataclass(frozen=True)
class Command:
    """A shell command as the README shows it (continuation lines joined), and where."""

    text: str
    line: int


@dataclass(frozen=True)
class Check:
    """How one command (or one recipe line) is checked; see the module docstring for ``how``."""

    how: str
    argv: tuple[str, ...] = ()
    why: str = ""
    options: tuple[str, ...] = ()
    top_argv: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


# --- finding the commands ----------------------------------------------------------------------

def extract_commands(markdown: str) -> list[Command]:
    """Every shell command ``markdown`` shows, in order of appearance.

    Lines of shell-tagged fenced blocks and of indented blocks are all commands (``\\``
    continuations joined, comments and blank lines dropped); inline code spans (which may run over
    a line break) and lines of untagged fenced blocks only when their first word is a program.
    """
    commands: list[Command] = []
    prose: list[tuple[int, str]] = []  # the lines of the current paragraph
    fence: str | None = None
    pending: tuple[str, int] | None = None  # a command continued with a backslash
    previous_blank = True
    in_indented = False
    for number, raw in enumerate(markdown.splitlines(), start=1):
        stripped = raw.strip()
        if fence is None and stripped.startswith("```"):
            commands += _inline_commands(prose)
            fence, in_indented = stripped[3:].strip().lower(), False
            continue
        if fence is not None and stripped.startswith("```"):
            fence, previous_blank = None, False
            continue
        indented = fence is None and raw.startswith("    ") and (previous_blank or in_indented)
        in_indented = indented or (in_indented and not stripped)
        previous_blank = not stripped
        if fence is None and not indented:
            if stripped:
                prose.append((number, raw))
            else:
                commands += _inline_commands(prose)
            continue
        commands += _inline_commands(prose)
        text = stripped
        if pending is not None:
            text, number = pending[0] + " " + text, pending[1]
            pending = None
        if text.endswith("\\"):
            pending = (text[:-1].rstrip(), number)
            continue
        text = re.sub(r"(^|\s)#.*$", "", text).strip()  # a shell comment
        if text and (fence in SHELL_FENCES or indented or _is_program(text)):
            commands.append(Command(text, number))
    return commands + _inline_commands(prose)


def _inline_commands(prose: list[tuple[int, str]]) -> list[Command]:
    """The inline code spans of a paragraph that are commands; empties ``prose``."""
    if not prose:
        return []
    first, text = prose[0][0], "\n".join(line for _, line in prose)
    prose.clear()
    return [Command(" ".join(m.group(1).split()), first + text.count("\n", 0, m.start()))
            for m in re.finditer(r"(?<!`)`([^`]+)`(?!`)", text) if _is_program(m.group(1))]


def _is_program(text: str) -> bool:
    words = [w for w in _tokens(text) if not ENV_ASSIGNMENT.match(w)]
    return bool(words) and (words[0] in PROGRAM_WORDS or bool(PROGRAM_PATH.match(words[0])))


def _tokens(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote: no command
        return []


# --- planning the checks -----------------------------------------------------------------------

def plan(command: Command | str, in_recipe: bool = False) -> list[Check]:
    """The checks of one command line (one per ``&&``/``||``/``;`` part).

    Raises
    ------
    UnknownCommand
        When a part matches none of the known patterns.
    """
    text = command.text if isinstance(command, Command) else command
    checks, part = [], []
    for token in _tokens(text) + [";"]:
        if token in SEPARATORS:
            if part:
                checks.append(_plan_part(part, text, in_recipe))
            part = []
        else:
            part.append(token)
    if not checks:
        raise UnknownCommand(f"no command in {text!r}")
    return checks


def _plan_part(tokens: list[str], text: str, in_recipe: bool) -> Check:
    env = []
    while tokens and ENV_ASSIGNMENT.match(tokens[0]):
        name, value = tokens.pop(0).split("=", 1)
        env.append((name, value))
    if not tokens:
        raise UnknownCommand(f"only variable assignments in {text!r}")
    prog, args = tokens[0], tokens[1:]
    paths = tuple(_repo_files(args + [v for _, v in env]))
    if prog == "make":
        if in_recipe:  # `$(MAKE) ...`: make -n runs it, and its recipe lines are in the printout
            return Check("none", why="a sub-make: its recipe lines are checked as make -n prints them")
        return Check("make", ("make", "-n", "-B", *args), "make -n: a dry run of the recipe",
                     paths=paths, env=tuple(env))
    if _is_python(prog):
        return _plan_python(prog, args, env, paths, text)
    if Path(prog).name == "celery":
        return _plan_celery(prog, args, env, paths, text)
    if prog in SCRIPTS:
        return Check("help", (prog, "--help"), SCRIPTS[prog], _options(args),
                     paths=(prog, *paths), env=tuple(env))
    if prog in NOT_RUN:
        return Check("none", why=NOT_RUN[prog], paths=(prog,) if "/" in prog else ())
    if in_recipe and prog in RECIPE_UTILITIES:
        return Check("none", why="a shell utility of the recipe")
    raise UnknownCommand(f"{text!r}: {prog!r} is none of the programs this test knows "
                         "(add it to tests/readme_commands.py with how it is checked)")


def _plan_python(prog, args, env, paths, text) -> Check:
    # run as written: a bare `python` is the interpreter first on PATH (no venv is activated)
    own = (prog,) if "/" in prog else ()
    if args and BENCH_SCRIPT.match(args[0]):
        return Check("help", (prog, args[0], "--help"), BENCH_REASON, _options(args[1:]),
                     paths=(*own, *paths), env=tuple(env))
    if len(args) >= 2 and args[0] == "-m" and BENCH_MODULE.match(args[1]):
        script = args[1].replace(".", "/") + ".py"
        return Check("help", (prog, "-m", args[1], "--help"), BENCH_REASON, _options(args[2:]),
                     paths=(*own, script, *paths), env=tuple(env))
    if len(args) < 2 or args[0] != "-m" or args[1] not in PYTHON_MODULES:
        raise UnknownCommand(f"{text!r}: not `python -m <a module this test knows>` nor "
                             "`python bench/NAME.py`")
    module, rest = args[1], args[2:]
    known = PYTHON_MODULES[module]
    prefix = (prog, "-m", module)
    if isinstance(known, str):
        why, sub, top = known, (), ()
    else:
        sub_name = rest[0] if rest and not rest[0].startswith("-") else None
        if sub_name not in known:
            raise UnknownCommand(f"{text!r}: `{module}` subcommand {sub_name!r} is not one this "
                                 f"test knows ({', '.join(known)})")
        why, sub, top, rest = known[sub_name], (sub_name,), prefix + ("--help",), rest[1:]
    if (module, *sub) in RUN_AS_WRITTEN:
        run_env = tuple(env) + tuple(RUN_AS_WRITTEN[(module, *sub)].items())
        return Check("run", (*prefix, *sub, *rest), why, paths=(*own, *paths), env=run_env)
    return Check("help", (*prefix, *sub, "--help"), why, _options(rest), top,
                 (*own, *paths), tuple(env))


def _plan_celery(prog, args, env, paths, text) -> Check:
    app, sub, rest = None, None, []
    it = iter(args)
    for token in it:
        if token in ("-A", "--app"):
            app = next(it, None)
        elif token.startswith("--app="):
            app = token.split("=", 1)[1]
        elif sub is None and not token.startswith("-"):
            sub = token
        else:
            rest.append(token)
    if app is None or sub not in CELERY:
        raise UnknownCommand(f"{text!r}: not `celery -A APP {'|'.join(CELERY)} ...`")
    own = (prog,) if "/" in prog else ()
    # -A is given to the help call itself: celery loads the app (and fails on a wrong one) first
    return Check("help", (prog, "-A", app, sub, "--help"), CELERY[sub], _options(rest),
                 paths=(*own, *paths), env=tuple(env))


def _is_python(prog: str) -> bool:
    return re.fullmatch(r"python3?(\.\d+)?", Path(prog).name) is not None


def _options(args: list[str]) -> tuple[str, ...]:
    return tuple(a.split("=", 1)[0] for a in args if a.startswith("-") and a not in ("-", "--"))


def _repo_files(args: list[str]) -> list[str]:
    return [a for a in args if REPO_FILE.match(a)]


# --- running the checks ------------------------------------------------------------------------

class Runner:
    """Runs checks from the repository root; each distinct program call runs once, in parallel.

    Parameters
    ----------
    root : the repository root (the working directory of every call).
    jobs : program calls at a time (they are mostly interpreter start-ups and imports).
    timeout : seconds a call may take; a program that does its work instead of answering
        ``--help`` is stopped (its whole process group) and reported.
    """

    def __init__(self, root: Path = ROOT, jobs: int = 4, timeout: float = 120.0):
        self.root, self.timeout = root, timeout
        self._pool = ThreadPoolExecutor(jobs)
        self._calls: dict[tuple, Future] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def call(self, argv: tuple[str, ...], env: tuple[tuple[str, str], ...] = ()) -> Future:
        """A future of (exit status or None on timeout, stdout + stderr) of ``argv``."""
        key = (argv, env)
        with self._lock:
            if key not in self._calls:
                self._calls[key] = self._pool.submit(self._run, argv, env)
            return self._calls[key]

    def _run(self, argv, env) -> tuple[int | None, str]:
        full_env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
        full_env.update(env)
        try:
            proc = subprocess.Popen(argv, cwd=self.root, env=full_env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                    start_new_session=True)
        except OSError as e:
            return 127, f"cannot start: {e}"
        try:
            out, _ = proc.communicate(timeout=self.timeout)
            return proc.returncode, out
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return None, out

    def problems(self, check: Check) -> list[str]:
        """What is wrong with one check (empty: it passes)."""
        found = [f"{p}: no such file in the repository" for p in check.paths
                 if not (self.root / p).exists()]
        found += [f"{p}: not executable" for p in check.paths
                  if p.endswith(".sh") or p.startswith((".ci/", ".venv/bin/"))
                  if (self.root / p).exists() and not os.access(self.root / p, os.X_OK)]
        if check.how == "none":
            return found
        shown = " ".join(shlex.quote(a) for a in check.argv)
        started = [self.call(check.argv, check.env)]
        if check.top_argv:
            started.append(self.call(check.top_argv, check.env))
        status, out = started[0].result()
        if status is None:
            hint = " (does it do its work instead of printing help?)" if check.how == "help" else ""
            return found + [f"`{shown}` did not finish within {self.timeout:.0f} s{hint}"]
        if status != 0:
            hint = (" (a bare python is the interpreter on PATH, not the venv's: write .venv/bin/python)"
                    if "/" not in check.argv[0] and _is_python(check.argv[0]) else "")
            return found + [f"`{shown}` exited with {status}{hint}:\n{_tail(out)}"]
        if check.how == "make":
            return found + self._recipe_problems(out)
        if check.how == "help":
            if "usage" not in out.lower():
                found.append(f"`{shown}` printed no usage text:\n{_tail(out)}")
            text = out + (started[1].result()[1] if check.top_argv else "")
            found += [f"option {o} is not in the help of `{shown}`" for o in check.options
                      if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", text)]
        return found

    def _recipe_problems(self, printout: str) -> list[str]:
        lines = [ln.strip() for ln in printout.splitlines()
                 if ln.strip() and not re.match(r"^make(\[\d+\])?: ", ln)]
        if not lines:
            return ["make -n printed no recipe"]
        found, planned = [], []
        for line in lines:
            try:
                planned.append((line, plan(line, in_recipe=True)))
            except UnknownCommand as e:
                found.append(f"recipe line not recognised: {e}")
        for line, checks in planned:
            for check in checks:  # start every call before waiting on any
                if check.how != "none":
                    self.call(check.argv, check.env)
                    if check.top_argv:
                        self.call(check.top_argv, check.env)
        for line, checks in planned:
            found += [f"recipe line `{line}`: {p}" for c in checks for p in self.problems(c)]
        return found


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
