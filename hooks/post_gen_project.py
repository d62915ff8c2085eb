"""Prune the files of every option nobody picked, then print the next steps.

``MANIFEST`` is the single list of option-specific files: tests import it from this file, which
is plain Python before cookiecutter renders it with Jinja. Cookiecutter runs the rendered file
inside the generated project. A manifest path missing from the generated tree is a bug in the
template: the hook prints one ``ERROR:`` line to stderr and exits with status 1 before removing
anything. Only the standard library is used, and nothing here may look like Jinja markup.

A bake from a git checkout of the template also gets ``.cruft.json``: the template, its commit
and the answers, as ``cruft create`` writes them, so ``cruft update`` can bring the template's
later fixes. When cruft itself bakes (``create``, or the two renders of an ``update``), the
answers carry ``_commit`` and cruft keeps that file: the hook writes none, so an update's
renders are pruned exactly as a fresh bake is.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

# (option, value) -> paths kept only when the option has that value and removed otherwise.
# Paths are relative to the project root, written with "/"; a directory goes with all its
# contents. A path listed under several options is kept only when all of them hold.
MANIFEST = {
    ("use_pgbouncer", True): [
        "config/pgbouncer",
        "deploy/pgbouncer",
        "docs/pgbouncer.md",
        "tests/pgbouncer",
    ],
    ("use_read_replica", True): [
        "config/replicas",
        "docs/read-replicas.md",
        "tests/replicas",
    ],
    ("ci", "github"): [".github"],
}

# Cookiecutter renders every answer into this raw string as JSON. JSON escapes each quote and
# backslash inside a value, so no answer can end the string early or become code.
ANSWERS_JSON = r"""
{{ cookiecutter | jsonify }}
"""

FIX = "fix MANIFEST in hooks/post_gen_project.py"

CRUFT_FILE = ".cruft.json"
# cookiecutter's built-in abbreviations, as the git URLs cruft clones.
ABBREVIATIONS = {
    "gh": "https://github.com/{}.git",
    "gl": "https://gitlab.com/{}.git",
    "bb": "https://bitbucket.org/{}",
}
# Context entries that describe this machine's bake, not the answers (cruft records none).
LOCAL_KEYS = {"_output_dir", "_repo_dir", "_checkout"}


def manifest_paths(manifest: dict = MANIFEST) -> list[str]:
    """Every path the manifest names, once each, in manifest order."""
    return list(dict.fromkeys(path for paths in manifest.values() for path in paths))


def paths_to_remove(answers: dict, manifest: dict = MANIFEST) -> list[str]:
    """The manifest paths whose option does not have the value they need."""
    remove = [
        path
        for (option, wanted), paths in manifest.items()
        if answers[option] != wanted
        for path in paths
    ]
    return list(dict.fromkeys(remove))


def paths_to_keep(answers: dict, manifest: dict = MANIFEST) -> list[str]:
    """The manifest paths every option of which has the value they need."""
    remove = set(paths_to_remove(answers, manifest))
    return [path for path in manifest_paths(manifest) if path not in remove]


def _is_project_relative(path):
    if not isinstance(path, str) or "\\" in path:
        return False
    pure = PurePosixPath(path)
    return path == str(pure) and path != "." and not pure.is_absolute() and ".." not in pure.parts


def _lexists(path):
    return path.exists() or path.is_symlink()


def manifest_errors(project_dir: Path | str, answers: dict, manifest: dict = MANIFEST) -> list[str]:
    """ERROR lines for every manifest entry that does not match the template (empty if none)."""
    errors = []
    for (option, wanted), paths in manifest.items():
        if option not in answers:
            errors.append(f"ERROR: MANIFEST option {option!r} is not a template variable: {FIX}")
            continue
        for path in paths:
            if not _is_project_relative(path):
                errors.append(
                    f"ERROR: MANIFEST path {path!r} ({option}={wanted!r}) is not a relative "
                    f"path inside the project: {FIX}"
                )
            elif not _lexists(Path(project_dir) / path):
                errors.append(
                    f"ERROR: MANIFEST path {path!r} ({option}={wanted!r}) does not exist in "
                    f"the generated project: {FIX} or add it to the template"
                )
    return errors


def remove_paths(project_dir: Path | str, paths: list[str]) -> None:
    """Delete each path (file, link or whole directory) and any directory it leaves empty."""
    root = Path(project_dir).resolve()
    for path in paths:
        target = root / path
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif _lexists(target):
            target.unlink()
        parent = target.parent
        while parent != root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


def _git(directory: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, check=False
        )
    except OSError:  # no git on this machine
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def cruft_state(answers: dict, cwd: str | None = None) -> dict | None:
    """The ``.cruft.json`` of this bake, as ``cruft create`` writes it; None when cruft bakes
    (it writes its own) or when the template is not a git checkout. A relative ``_repo_dir``
    (``cookiecutter .``) is relative to the shell's directory, ``$PWD``."""
    if "_commit" in answers or not answers.get("_repo_dir"):
        return None
    cwd = cwd if cwd is not None else os.environ.get("PWD", ".")
    repo_dir = Path(cwd, answers["_repo_dir"]).resolve()
    top = _git(repo_dir, "rev-parse", "--show-toplevel")
    commit = _git(repo_dir, "rev-parse", "HEAD")
    if not top or not commit or not (repo_dir / "cookiecutter.json").is_file():
        return None
    template = str(answers.get("_template", ""))
    prefix, _, rest = template.partition(":")
    if prefix in ABBREVIATIONS:
        url = ABBREVIATIONS[prefix].format(rest)
    elif "://" in template or template.startswith("git@"):
        url = template.removeprefix("git+")
    else:  # a local clone: updates come from it (README.md says how to point at a URL)
        url = top
    directory = repo_dir.relative_to(Path(top).resolve()).as_posix()
    # In cookiecutter.json's order, as cruft writes them (the rendered answers come sorted).
    order = json.loads((repo_dir / "cookiecutter.json").read_text(encoding="utf-8"))
    names = [name for name in [*order, *answers] if name in answers]
    skipped = LOCAL_KEYS | {"_template", "_commit"}
    context = {name: answers[name] for name in dict.fromkeys(names) if name not in skipped}
    context |= {"_template": url, "_commit": commit}
    return {
        "template": url,
        "commit": commit,
        "checkout": answers.get("_checkout"),
        "context": {"cookiecutter": context},
        "directory": None if directory == "." else directory,
    }


def write_cruft_file(project_dir: Path | str, state: dict) -> None:
    """Write ``state`` as cruft does (2-space indent, non-ASCII kept, a final newline)."""
    text = json.dumps(state, ensure_ascii=False, indent=2, separators=(",", ": ")) + "\n"
    (Path(project_dir) / CRUFT_FILE).write_text(text, encoding="utf-8")


def next_steps(answers: dict, project_dir: Path | str) -> list[str]:
    """The commands to run next, only those that apply to the chosen options."""
    slug = answers["project_slug"]
    python = f"python{answers['python_version']}"
    postgresql = answers["postgresql_version"]
    steps = [
        f"cd {shlex.quote(str(project_dir))}",
        f"{python} -m venv .venv && . .venv/bin/activate",
        "python -m pip install uv==0.13.9 && uv sync --locked    # exactly uv.lock's versions",
        f"createdb {slug}    # on PostgreSQL {postgresql}, or DATABASE_URL in .env (README.md)",
    ]
    if answers["use_pgbouncer"]:
        steps.append("# PgBouncer: DATABASE_URL points at it, DATABASE_DIRECT_URL at PostgreSQL")
    if answers["use_read_replica"]:
        steps.append("# Read replica: list its URL in DATABASE_REPLICA_URLS")
    steps += [
        "python manage.py migrate",
        "python manage.py createsuperuser",
        "python manage.py runserver",
        "python -m pytest",
    ]
    if answers["ci"] == "github":
        steps.append("# Push to GitHub: .github/workflows runs the tests on every push")
    steps.append("# Before going live: docs/backups.md sets up backups with point-in-time recovery")
    steps.append("# README.md lists every setting and environment variable")
    return steps


def load_answers(text: str) -> dict:
    """Parse the rendered answers; exit with an ERROR line if the file was not rendered."""
    try:
        answers = json.loads(text)
    except ValueError:
        answers = None
    if not isinstance(answers, dict):
        sys.exit("ERROR: hooks/post_gen_project.py must be run by cookiecutter (not rendered)")
    return answers


def main() -> int:
    answers = load_answers(ANSWERS_JSON)
    project_dir = Path.cwd()
    errors = manifest_errors(project_dir, answers)
    if errors:
        print(errors[0], file=sys.stderr)
        return 1
    remove_paths(project_dir, paths_to_remove(answers))
    state = cruft_state(answers)
    if state is not None:
        write_cruft_file(project_dir, state)
    print(f"\nCreated {answers['project_name']} in {project_dir}\n\nNext steps:")
    for step in next_steps(answers, project_dir):
        print(f"  {step}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
