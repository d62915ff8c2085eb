"""Refuse bad answers before cookiecutter writes any file of the project.

Cookiecutter renders this file with Jinja, then runs it inside the new project directory.
At the first bad answer it prints one line, ``ERROR: <prompt> <value> is not valid: <what is
allowed>``, to stderr and exits with status 1; cookiecutter then stops and deletes the project
directory if it created it (a directory that existed before is left as it was).

The file is plain Python before rendering too: tests import it and call the validators.
Only the standard library is used, and nothing here may look like Jinja markup.
"""

import json
import keyword
import re
import sys
import unicodedata
from pathlib import Path

# Cookiecutter renders every answer into this raw string as JSON. JSON escapes each quote and
# backslash inside a value, so no answer can end the string early or become code.
ANSWERS_JSON = r"""
{{ cookiecutter | jsonify }}
"""
# The same for cookiecutter.json as cookiecutter read it, choice lists included. cruft's bakes
# (create, and the two renders of an update) give no ``_cookiecutter``: then "{}", as a replay.
TEMPLATE_JSON = r"""
{{ _cookiecutter | default({}) | jsonify }}
"""
# The oldest Python each Django release supports.
MIN_PYTHON_FOR_DJANGO = {"5.2": "3.10", "6.1": "3.12"}

# Modules the generated project imports, itself or through Django: a package of the same name
# in the project root would be imported instead of them.
PROJECT_MODULES = frozenset(
    {
        "asgiref",
        "config",
        "dj_database_url",
        "django",
        "gunicorn",
        "manage",
        "psycopg",
        "psycopg_binary",
        "psycopg_pool",
        "pytest",
        "pytest_django",
        "site",
        "sqlparse",
        "test",
        "tests",
        "uvicorn",
    }
)
# Removed from the standard library in Python 3.13 (PEP 594) but still there in 3.11 and 3.12,
# which the project may target even when cookiecutter itself runs on 3.13.
REMOVED_STDLIB_MODULES = frozenset(
    {
        "aifc",
        "audioop",
        "cgi",
        "cgitb",
        "chunk",
        "crypt",
        "imghdr",
        "lib2to3",
        "mailcap",
        "msilib",
        "nis",
        "nntplib",
        "ossaudiodev",
        "pipes",
        "sndhdr",
        "spwd",
        "sunau",
        "telnetlib",
        "uu",
        "xdrlib",
    }
)
STDLIB_MODULES = frozenset(sys.stdlib_module_names) | REMOVED_STDLIB_MODULES
# Soft keywords of every Python the project may target ("type" became one in 3.12).
SOFT_KEYWORDS = frozenset(keyword.softkwlist) | {"_", "case", "match", "type"}

SLUG_RULE = (
    "use a lowercase Python identifier (letters a-z, digits, underscores; "
    "not starting with a digit)"
)
SLUG_PATTERN = re.compile(r"[a-z_][a-z0-9_]*")
EMAIL_RULE = (
    "use an address like name@example.com (one @, a dot in the domain, no spaces), "
    "or leave it empty"
)
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
SINGLE_LINE_RULE = "use a single line of text (no line breaks or control characters)"
BOOLEAN_RULE = "answer yes or no (y/n, yes/no, true/false)"


def load_choices(text: str) -> dict:
    """The values each choice prompt offers, as cookiecutter.json lists them.

    Read from the rendered ``TEMPLATE_JSON`` when cookiecutter runs the hook, from
    cookiecutter.json itself when the tests import the file unrendered. ``cookiecutter --replay``
    renders the replayed answers there instead of the lists: then no choices are known.
    """
    try:
        template = json.loads(text)
    except ValueError:
        template = json.loads(
            (Path(__file__).resolve().parents[1] / "cookiecutter.json").read_text(encoding="utf-8")
        )
    return {name: tuple(value) for name, value in template.items() if isinstance(value, list)}


CHOICES = load_choices(TEMPLATE_JSON)
# The Django releases this hook knows: the choices a replay leaves it, at the least.
KNOWN_CHOICES = {"django_version": tuple(MIN_PYTHON_FOR_DJANGO)}


def _is_single_line(value):
    return not any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in value)


def check_text(value) -> str | None:
    """Free text (description, author name): a single line, may be empty."""
    if not isinstance(value, str) or not _is_single_line(value):
        return SINGLE_LINE_RULE
    return None


def check_project_name(value) -> str | None:
    """Free text, but a single line and not blank."""
    if not isinstance(value, str) or not value.strip():
        return "give the project a name (free text, not empty)"
    return check_text(value)


def check_project_slug(value) -> str | None:
    """A lowercase identifier that is no keyword and shadows no module the project imports."""
    if not isinstance(value, str) or not SLUG_PATTERN.fullmatch(value):
        return SLUG_RULE
    instead = f"choose another name, e.g. '{value}_project'"
    if keyword.iskeyword(value):
        return f"it is a Python keyword; {instead}"
    if value in SOFT_KEYWORDS:
        return f"it is a Python soft keyword; {instead}"
    if value in PROJECT_MODULES:
        return f"it would shadow the '{value}' module the project imports; {instead}"
    if value in STDLIB_MODULES:
        return f"it would shadow the standard-library module '{value}'; {instead}"
    return None


def check_author_email(value) -> str | None:
    """Empty, or something shaped like an email address."""
    if value == "":
        return None
    if not isinstance(value, str) or not EMAIL_PATTERN.fullmatch(value):
        return EMAIL_RULE
    return None


def check_choice(name: str, value) -> str | None:
    """One of the values cookiecutter.json offers for ``name``, when they are known."""
    choices = CHOICES.get(name) or KNOWN_CHOICES.get(name)
    if choices and value not in choices:
        return "choose one of " + ", ".join(choices)
    return None


def check_boolean(value) -> str | None:
    """A real boolean (cookiecutter turns y/n/yes/no/true/false into one)."""
    if not isinstance(value, bool):
        return BOOLEAN_RULE
    return None


def _version(text):
    return tuple(int(part) for part in text.split("."))


def check_python_for_django(python_version: str, django_version: str) -> str | None:
    """Whether the Django release supports the Python version (both already valid)."""
    minimum = MIN_PYTHON_FOR_DJANGO[django_version]
    if _version(python_version) >= _version(minimum):
        return None
    rule = f"Django {django_version} needs Python {minimum} or newer"
    pythons = [v for v in CHOICES.get("python_version", ()) if _version(v) >= _version(minimum)]
    djangos = [
        d
        for d in CHOICES.get("django_version", ())
        if _version(python_version) >= _version(MIN_PYTHON_FOR_DJANGO[d])
    ]
    if not (pythons and djangos):  # the choices are unknown (a replay)
        return rule
    return (
        f"{rule}; choose python_version {' or '.join(sorted(pythons, key=_version))}, "
        f"or django_version {' or '.join(djangos)}"
    )


# Prompt -> validator, in prompt order: the first failure is the one reported.
VALIDATORS = {
    "project_name": check_project_name,
    "project_slug": check_project_slug,
    "description": check_text,
    "author_name": check_text,
    "author_email": check_author_email,
    "django_version": lambda value: check_choice("django_version", value),
    "python_version": lambda value: check_choice("python_version", value),
    "postgresql_version": lambda value: check_choice("postgresql_version", value),
    "use_pgbouncer": check_boolean,
    "use_read_replica": check_boolean,
    "ci": lambda value: check_choice("ci", value),
}


def error_line(name: str, value, rule: str, *, context: str = "") -> str:
    """The one line printed for a refused answer; repr() keeps any value on one line."""
    return f"ERROR: {name} {value!r} is not valid{context}: {rule}"


def validate(answers: dict) -> list[str]:
    """Return an ERROR line for every bad answer, in prompt order (empty when all are good)."""
    errors = []
    valid = set()
    for name, check in VALIDATORS.items():
        if name not in answers:
            errors.append(
                f"ERROR: {name} has no answer: cookiecutter.json and "
                "hooks/pre_gen_project.py disagree"
            )
            continue
        rule = check(answers[name])
        if rule:
            errors.append(error_line(name, answers[name], rule))
            continue
        valid.add(name)
        if name == "python_version" and "django_version" in valid:
            django_version = answers["django_version"]
            rule = check_python_for_django(answers[name], django_version)
            if rule:
                context = f" with django_version {django_version!r}"
                errors.append(error_line(name, answers[name], rule, context=context))
    return errors


def load_answers(text: str) -> dict:
    """Parse the rendered answers; exit with an ERROR line if the file was not rendered."""
    try:
        answers = json.loads(text)
    except ValueError:
        answers = None
    if not isinstance(answers, dict):
        sys.exit("ERROR: hooks/pre_gen_project.py must be run by cookiecutter (not rendered)")
    return answers


def main() -> int:
    errors = validate(load_answers(ANSWERS_JSON))
    if errors:
        print(errors[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
