"""Specification of hooks/pre_gen_project.py: it refuses a bad answer before anything is
written, naming the prompt, the value and the rule.

Bakes run cookiecutter in-process (its CLI through click's runner, or pytest-cookies), so each
takes a fraction of a second; one test runs the real command in a subprocess.
"""

import json
import shutil
import subprocess
import sys

import pytest

from devtools.bakery import (
    ROOT,
    cookiecutter_json,
    error_lines,
    everything_under,
    load_hook,
    no_input_answers,
    rendered_hook,
    template_context,
)

pytestmark = pytest.mark.quick  # ./run-tests --quick

pre_gen = load_hook("pre_gen_project")


# --- what the hook knows ----------------------------------------------------------------------


def test_pre_gen_hook_validates_every_question_and_knows_every_django_version():
    context = cookiecutter_json()
    prompts = [key for key in context if not key.startswith("_")]
    assert list(pre_gen.VALIDATORS) == prompts
    assert set(pre_gen.MIN_PYTHON_FOR_DJANGO) == set(context["django_version"])


def test_unrendered_pre_gen_hook_reads_the_choices_from_cookiecutter_json():
    context = cookiecutter_json()
    lists = {key: tuple(value) for key, value in context.items() if isinstance(value, list)}
    assert lists == pre_gen.CHOICES


def test_rendered_pre_gen_hook_takes_the_choices_from_the_context_cookiecutter_renders(tmp_path):
    template = template_context(postgresql_version=["16", "18"])
    hook = rendered_hook("pre_gen_project", tmp_path, no_input_answers(), template)

    assert hook.CHOICES["postgresql_version"] == ("16", "18")
    assert hook.check_choice("postgresql_version", "17") == "choose one of 16, 18"


# --- refused answers --------------------------------------------------------------------------

HOOK, COOKIECUTTER = "refused by pre_gen_project", "refused by cookiecutter itself"
REFUSED = [
    # (answers, prompt named, value named, who refuses, part of the rule shown)
    ({"project_slug": "1bad"}, "project_slug", "1bad", HOOK, "lowercase Python identifier"),
    ({"project_slug": "Bad-Slug"}, "project_slug", "Bad-Slug", HOOK, "lowercase Python identifier"),
    ({"project_slug": "my project"}, "project_slug", "my project", HOOK, "lowercase Python"),
    ({"project_slug": "class"}, "project_slug", "class", HOOK, "Python keyword"),
    ({"project_slug": "match"}, "project_slug", "match", HOOK, "soft keyword"),
    ({"project_slug": "type"}, "project_slug", "type", HOOK, "soft keyword"),
    ({"project_slug": "django"}, "project_slug", "django", HOOK, "shadow the 'django' module"),
    ({"project_slug": "config"}, "project_slug", "config", HOOK, "shadow the 'config' module"),
    ({"project_slug": "site"}, "project_slug", "site", HOOK, "shadow the 'site' module"),
    ({"project_slug": "tests"}, "project_slug", "tests", HOOK, "shadow the 'tests' module"),
    ({"project_slug": "json"}, "project_slug", "json", HOOK, "standard-library module 'json'"),
    ({"project_slug": "cgi"}, "project_slug", "cgi", HOOK, "standard-library module 'cgi'"),
    ({"project_name": "  "}, "project_name", "  ", HOOK, "not empty"),
    ({"description": "two\nlines"}, "description", "two\nlines", HOOK, "single line"),
    ({"author_email": "not-an-email"}, "author_email", "not-an-email", HOOK, "name@example.com"),
    ({"author_email": "a@b"}, "author_email", "a@b", HOOK, "a dot in the domain"),
    ({"author_email": "a b@c.d"}, "author_email", "a b@c.d", HOOK, "no spaces"),
    (
        {"django_version": "6.1", "python_version": "3.11"},
        "python_version",
        "3.11",
        HOOK,
        # The alternatives come from the choices cookiecutter rendered into the hook.
        "Django 6.1 needs Python 3.12 or newer; choose python_version 3.12 or 3.13, "
        "or django_version 5.2",
    ),
    ({"django_version": "4.2"}, "django_version", "4.2", COOKIECUTTER, "choices are"),
    ({"python_version": "3.10"}, "python_version", "3.10", COOKIECUTTER, "choices are"),
    ({"postgresql_version": "14"}, "postgresql_version", "14", COOKIECUTTER, "choices are"),
    ({"ci": "gitlab"}, "ci", "gitlab", COOKIECUTTER, "choices are"),
    ({"use_pgbouncer": "maybe"}, "use_pgbouncer", "maybe", COOKIECUTTER, "to a boolean"),
]


def refused_id(row):
    given = ",".join(f"{key}={value!r}" for key, value in row[0].items())
    return f"{given}-{'hook' if row[3] == HOOK else 'cookiecutter'}"


@pytest.mark.parametrize(
    ("given", "prompt", "value", "refused_by", "rule"),
    [pytest.param(*row, id=refused_id(row)) for row in REFUSED],
)
def test_bad_answer_is_refused_naming_the_prompt_and_value_and_nothing_is_left_on_disk(
    bake_cli, output_dir, given, prompt, value, refused_by, rule
):
    bake = bake_cli(*(f"{key}={answer}" for key, answer in given.items()))

    assert bake.exit_code != 0
    if refused_by == HOOK:
        [line] = error_lines(bake.output)
        assert line.startswith(f"ERROR: {prompt} {value!r} is not valid")
        assert rule in line
    else:
        # Cookiecutter checks choices and booleans itself, before any hook or directory.
        assert isinstance(bake.exception, ValueError)
        assert f"{value} provided for" in str(bake.exception)
        assert f"variable {prompt}" in str(bake.exception)
        assert rule in str(bake.exception)
    assert everything_under(output_dir) == []


def test_refused_bake_through_pytest_cookies_leaves_no_project_directory(cookies, tmp_path):
    result = cookies.bake(template=str(ROOT), extra_context={"project_slug": "class"})

    assert result.exit_code != 0
    assert type(result.exception).__name__ == "FailedHookException"
    # pytest-cookies bakes into tmp_path/cookies/bake00, which it creates itself.
    assert everything_under(tmp_path / "cookies") == ["bake00"]


def test_refusal_is_one_error_line_on_stderr_of_the_real_command(output_dir, user_config):
    command = [sys.executable, "-m", "cookiecutter", "--no-input", "--config-file"]
    command += [str(user_config), "--output-dir", str(output_dir), str(ROOT), "project_slug=1bad"]

    process = subprocess.run(command, capture_output=True, text=True, check=False)

    assert process.returncode == 1
    assert error_lines(process.stderr) == [
        "ERROR: project_slug '1bad' is not valid: use a lowercase Python identifier "
        "(letters a-z, digits, underscores; not starting with a digit)"
    ]
    assert everything_under(output_dir) == []


def test_refused_bake_leaves_an_existing_directory_and_its_files_untouched(bake_cli, output_dir):
    existing = output_dir / "my_project"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")

    bake = bake_cli("author_email=nope", options=["--overwrite-if-exists"])

    assert bake.exit_code != 0
    assert error_lines(bake.output)[0].startswith("ERROR: author_email 'nope'")
    assert everything_under(output_dir) == ["my_project", "my_project/notes.txt"]
    assert (existing / "notes.txt").read_text() == "mine"


def test_bake_into_an_existing_directory_without_overwrite_is_refused_by_cookiecutter(
    bake_cli, output_dir
):
    existing = output_dir / "my_project"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")

    bake = bake_cli()

    assert bake.exit_code != 0
    assert "already exists" in bake.output
    assert everything_under(output_dir) == ["my_project", "my_project/notes.txt"]


def test_slug_with_a_slash_is_refused_but_cookiecutter_keeps_the_parent_it_created(
    bake_cli, output_dir
):
    # Cookiecutter creates out/a/b before the hook runs and deletes only out/a/b afterwards.
    bake = bake_cli("project_slug=a/b")

    assert error_lines(bake.output)[0].startswith("ERROR: project_slug 'a/b' is not valid")
    assert everything_under(output_dir) == ["a"]


# --- refused replays --------------------------------------------------------------------------


def test_replay_of_refused_answers_is_refused_again(bake_cli, output_dir):
    # A replay renders the replayed answers where the choice lists were, so the refusal
    # cannot suggest other versions.
    bake_cli("django_version=6.1", "python_version=3.11")

    bake = bake_cli(replay=True)

    assert bake.exit_code != 0
    assert error_lines(bake.output) == [
        "ERROR: python_version '3.11' is not valid with django_version '6.1': "
        "Django 6.1 needs Python 3.12 or newer"
    ]
    assert everything_under(output_dir) == []


def test_a_hand_edited_replay_with_an_unknown_django_is_refused_by_name(
    bake_cli, output_dir, user_config
):
    bake_cli()
    shutil.rmtree(output_dir / "my_project")
    (replay,) = (user_config.parent / "replay").glob("*.json")
    answers = json.loads(replay.read_text())
    answers["cookiecutter"]["django_version"] = "9.9"
    replay.write_text(json.dumps(answers))

    bake = bake_cli(replay=True)

    assert bake.exit_code != 0
    assert error_lines(bake.output) == [
        "ERROR: django_version '9.9' is not valid: choose one of 5.2, 6.1"
    ]
    assert everything_under(output_dir) == []


# --- pre_gen_project validators ---------------------------------------------------------------


@pytest.mark.parametrize("slug", ["my_project", "shop2", "blog_api", "_internal"])
def test_lowercase_identifiers_are_valid_slugs(slug):
    assert pre_gen.check_project_slug(slug) is None


@pytest.mark.parametrize(
    ("slug", "rule"),
    [
        ("", "lowercase Python identifier"),
        ("1bad", "lowercase Python identifier"),
        ("Bad", "lowercase Python identifier"),
        ("bad-slug", "lowercase Python identifier"),
        ("my project", "lowercase Python identifier"),
        ("café", "lowercase Python identifier"),
        ("ok\n", "lowercase Python identifier"),
        ("import", "Python keyword"),
        ("match", "soft keyword"),
        ("case", "soft keyword"),
        ("_", "soft keyword"),
        ("psycopg_pool", "the project imports"),
        ("dj_database_url", "the project imports"),
        ("pytest_django", "the project imports"),
        ("manage", "the project imports"),
        ("gunicorn", "the project imports"),
        ("uvicorn", "the project imports"),
        ("test", "the project imports"),
        ("email", "standard-library"),
        ("telnetlib", "standard-library"),
    ],
)
def test_slug_refusals_say_what_is_wrong(slug, rule):
    assert rule in pre_gen.check_project_slug(slug)


def test_refused_keyword_slug_suggests_another_name():
    assert "e.g. 'class_project'" in pre_gen.check_project_slug("class")


@pytest.mark.parametrize("email", ["", "a@b.co", "first.last+tag@mail.example.org"])
def test_empty_or_address_shaped_emails_are_valid(email):
    assert pre_gen.check_author_email(email) is None


@pytest.mark.parametrize(
    "email", ["not-an-email", "a@b", "a@@b.co", "a@b@c.co", "a b@c.co", "a@b.co ", "@b.co", "a@b."]
)
def test_emails_without_one_at_and_a_dotted_domain_are_invalid(email):
    assert pre_gen.check_author_email(email) == pre_gen.EMAIL_RULE


@pytest.mark.parametrize("text", ["", "Ada Lovelace", 'Ünïcödé with "quotes" and \\'])
def test_single_line_free_text_is_valid(text):
    assert pre_gen.check_text(text) is None


@pytest.mark.parametrize("text", ["two\nlines", "carriage\rreturn", "tab\there", "nul\x00"])
def test_free_text_with_line_breaks_or_control_characters_is_invalid(text):
    assert pre_gen.check_text(text) == pre_gen.SINGLE_LINE_RULE


@pytest.mark.parametrize("name", ["", "   ", "two\nlines"])
def test_project_name_must_be_a_non_blank_single_line(name):
    assert pre_gen.check_project_name(name) is not None


@pytest.mark.parametrize("value", ["y", "yes", 1, None])
def test_only_real_booleans_are_valid_for_yes_no_questions(value):
    assert pre_gen.check_boolean(value) == pre_gen.BOOLEAN_RULE


def test_choice_refusal_lists_the_allowed_values():
    assert pre_gen.check_choice("postgresql_version", "14") == "choose one of 17, 15, 16, 18"
    assert pre_gen.check_choice("postgresql_version", "16") is None


@pytest.mark.parametrize(
    ("python_version", "django_version", "accepted"),
    [
        ("3.11", "5.2", True),
        ("3.12", "5.2", True),
        ("3.13", "5.2", True),
        ("3.11", "6.1", False),
        ("3.12", "6.1", True),
        ("3.13", "6.1", True),
    ],
)
def test_django_6_1_refuses_python_3_11(python_version, django_version, accepted):
    rule = pre_gen.check_python_for_django(python_version, django_version)
    assert (rule is None) is accepted


def test_default_answers_are_all_valid():
    assert pre_gen.validate(no_input_answers()) == []


def test_validate_reports_every_bad_answer_in_prompt_order():
    bad = no_input_answers(
        project_slug="1bad", author_email="x", python_version="3.11", django_version="6.1"
    )

    assert pre_gen.validate(bad) == [
        pre_gen.error_line("project_slug", "1bad", pre_gen.SLUG_RULE),
        pre_gen.error_line("author_email", "x", pre_gen.EMAIL_RULE),
        "ERROR: python_version '3.11' is not valid with django_version '6.1': Django 6.1 needs "
        "Python 3.12 or newer; choose python_version 3.12 or 3.13, or django_version 5.2",
    ]


def test_a_question_missing_from_the_answers_is_an_error():
    incomplete = no_input_answers()
    del incomplete["ci"]

    assert pre_gen.validate(incomplete) == [
        "ERROR: ci has no answer: cookiecutter.json and hooks/pre_gen_project.py disagree"
    ]


def test_error_line_keeps_any_value_on_one_line():
    line = pre_gen.error_line("description", "a\nb", pre_gen.SINGLE_LINE_RULE)
    assert "\n" not in line
    assert line.startswith("ERROR: description 'a\\nb' is not valid: ")


def test_pre_gen_main_prints_only_the_first_error_and_fails(monkeypatch, capsys):
    bad = no_input_answers(project_slug="class", author_email="x")
    monkeypatch.setattr(pre_gen, "ANSWERS_JSON", json.dumps(bad))

    assert pre_gen.main() == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [pre_gen.validate(bad)[0]]
    assert captured.out == ""


def test_pre_gen_main_accepts_good_answers_silently(monkeypatch, capsys):
    monkeypatch.setattr(pre_gen, "ANSWERS_JSON", json.dumps(no_input_answers()))

    assert pre_gen.main() == 0
    assert capsys.readouterr() == ("", "")


def test_unrendered_pre_gen_hook_refuses_to_run():
    with pytest.raises(SystemExit, match=r"^ERROR: hooks/.* must be run by cookiecutter"):
        pre_gen.main()
