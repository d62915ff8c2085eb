"""Specification of the template's questions and of its two hooks.

hooks/pre_gen_project.py refuses a bad answer before anything is written; hooks/post_gen_project.py
removes the files of the options nobody picked, as listed in its MANIFEST. Bakes run cookiecutter
in-process (its CLI through click's runner, or pytest-cookies), so each takes a fraction of a
second; one test runs the real command in a subprocess.
"""

import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from cookiecutter.cli import main as cookiecutter_cli
from cookiecutter.environment import StrictEnvironment
from cookiecutter.generate import generate_context
from cookiecutter.prompt import prompt_for_config

from devtools.bakery import CHOICES, combination_id, combinations, cookiecutter_json, load_hook

REPO = Path(__file__).resolve().parents[1]
PROJECT_TEMPLATE = "{{cookiecutter.project_slug}}"
HOOKS = REPO / "hooks"


pre_gen = load_hook("pre_gen_project")
post_gen = load_hook("post_gen_project")


def answers(**overrides):
    """The answers cookiecutter gives the hooks for --no-input with these overrides."""
    context = generate_context(str(REPO / "cookiecutter.json"), extra_context=overrides)
    return dict(prompt_for_config(context, no_input=True))


def all_option_combinations():
    """Every combination of answers to the options the manifest depends on."""
    return combinations(sorted({option for option, _ in post_gen.MANIFEST}))


def template_context(**overrides):
    """cookiecutter.json as cookiecutter passes it to hooks (``_cookiecutter``)."""
    return {k: v for k, v in cookiecutter_json().items() if not k.startswith("_")} | overrides


def rendered_hook(hook, directory, answers, template):
    """Render a hook as cookiecutter does, with these answers and cookiecutter.json, and
    import it."""
    context = {"cookiecutter": answers, "_cookiecutter": template}
    source = (HOOKS / f"{hook}.py").read_text(encoding="utf-8")
    rendered = StrictEnvironment(context=context).from_string(source).render(**context)
    (directory / f"{hook}.py").write_text(rendered, encoding="utf-8")
    return load_hook(hook, hooks_dir=directory)


def error_lines(text):
    """The lines a hook printed for a refusal (cookiecutter's own log lines excluded)."""
    return [
        line
        for line in text.splitlines()
        if line.startswith("ERROR:") and not line.startswith("ERROR: Stopping generation")
    ]


def everything_under(directory):
    return sorted(path.relative_to(directory).as_posix() for path in directory.rglob("*"))


# --- baking helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def user_config(tmp_path_factory):
    """A cookiecutter user config that keeps replay files and clones out of the home directory."""
    home = tmp_path_factory.mktemp("cookiecutter-home")
    config = home / "config.yaml"
    config.write_text(
        f"cookiecutters_dir: {home / 'cookiecutters'}\nreplay_dir: {home / 'replay'}\n"
    )
    return config


@pytest.fixture(autouse=True)
def _restore_cookiecutter_logging():
    """The CLI points cookiecutter's log handler at click's captured stream: undo it after."""
    logger = logging.getLogger("cookiecutter")
    handlers, level = logger.handlers[:], logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


@dataclass
class Bake:
    exit_code: int
    output: str  # what cookiecutter and its hooks printed, and any uncaught exception
    exception: BaseException | None


@pytest.fixture
def output_dir(tmp_path):
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


@pytest.fixture
def bake_cli(output_dir, user_config, capfd):
    """Run `cookiecutter --no-input TEMPLATE key=value...` (or `--replay`) into output_dir."""

    def bake(*key_values, options=(), template=REPO, replay=False):
        capfd.readouterr()
        result = CliRunner().invoke(
            cookiecutter_cli,
            [
                "--replay" if replay else "--no-input",
                "--config-file",
                str(user_config),
                "--output-dir",
                str(output_dir),
                *options,
                str(template),
                *key_values,
            ],
        )
        hooks = capfd.readouterr()  # the hooks run as subprocesses writing to the real fds
        exception = None if isinstance(result.exception, SystemExit) else result.exception
        output = "\n".join([result.output, hooks.out, hooks.err, repr(exception)])
        return Bake(result.exit_code, output, exception)

    return bake


# --- cookiecutter.json ------------------------------------------------------------------------


def test_cookiecutter_json_asks_exactly_the_contracted_questions_with_their_defaults():
    context = cookiecutter_json()
    prompts = [key for key in context if not key.startswith("_")]
    assert prompts == [
        "project_name",
        "project_slug",
        "description",
        "author_name",
        "author_email",
        "django_version",
        "python_version",
        "postgresql_version",
        "use_pgbouncer",
        "use_read_replica",
        "ci",
    ]
    defaults = answers()
    assert defaults["project_name"] == "My Project"
    assert defaults["project_slug"] == "my_project"
    assert defaults["author_email"] == ""
    assert context["django_version"] == ["5.2", "6.1"]
    assert context["python_version"] == ["3.12", "3.11", "3.13"]
    assert context["postgresql_version"] == ["17", "15", "16", "18"]
    assert context["use_pgbouncer"] is False
    assert context["use_read_replica"] is False
    assert context["ci"] == ["github", "none"]


def test_every_question_has_human_readable_text_and_every_choice_a_label():
    context = cookiecutter_json()
    texts = context["__prompts__"]
    for key, default in context.items():
        if key.startswith("_"):
            continue
        if isinstance(default, list):
            assert texts[key]["__prompt__"], key
            assert set(texts[key]) - {"__prompt__"} == set(default), key
        else:
            assert isinstance(texts[key], str) and texts[key], key


@pytest.mark.parametrize(
    ("project_name", "slug"),
    [
        ("My Project", "my_project"),
        ("  Shop-Front  2 ", "shop_front_2"),
        ("Café Society!", "cafe_society"),
        ("!!!", "project"),
    ],
)
def test_project_slug_is_derived_from_the_project_name(project_name, slug):
    assert answers(project_name=project_name)["project_slug"] == slug


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
    hook = rendered_hook("pre_gen_project", tmp_path, answers(), template)

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
    result = cookies.bake(template=str(REPO), extra_context={"project_slug": "class"})

    assert result.exit_code != 0
    assert type(result.exception).__name__ == "FailedHookException"
    # pytest-cookies bakes into tmp_path/cookies/bake00, which it creates itself.
    assert everything_under(tmp_path / "cookies") == ["bake00"]


def test_refusal_is_one_error_line_on_stderr_of_the_real_command(tmp_path, user_config):
    command = [sys.executable, "-m", "cookiecutter", "--no-input", "--config-file"]
    command += [str(user_config), "--output-dir", str(tmp_path), str(REPO), "project_slug=1bad"]

    process = subprocess.run(command, capture_output=True, text=True, check=False)

    assert process.returncode == 1
    assert error_lines(process.stderr) == [
        "ERROR: project_slug '1bad' is not valid: use a lowercase Python identifier "
        "(letters a-z, digits, underscores; not starting with a digit)"
    ]
    assert everything_under(tmp_path) == []


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


# --- accepted answers -------------------------------------------------------------------------


def test_default_answers_bake_a_project_named_after_the_slug(cookies):
    result = cookies.bake(template=str(REPO))

    assert result.exit_code == 0, result.exception
    assert result.exception is None
    assert result.project_path.name == "my_project"
    assert result.project_path.is_dir()


@pytest.mark.parametrize("combination", all_option_combinations(), ids=combination_id)
def test_bake_keeps_exactly_the_manifest_paths_of_the_chosen_options(cookies, combination):
    result = cookies.bake(template=str(REPO), extra_context=combination)

    assert result.exception is None, result.exception
    chosen = answers(**combination)
    present = {path for path in post_gen.manifest_paths() if (result.project_path / path).exists()}
    assert present == set(post_gen.paths_to_keep(chosen))


@pytest.mark.parametrize(
    ("spelling", "meaning"),
    [
        ("y", True),
        ("n", False),
        ("yes", True),
        ("no", False),
        ("true", True),
        ("false", False),
        ("Yes", True),
        ("FALSE", False),
    ],
)
def test_every_yes_no_spelling_works_on_the_command_line(bake_cli, output_dir, spelling, meaning):
    bake = bake_cli(f"use_pgbouncer={spelling}", f"use_read_replica={spelling}")

    assert bake.exit_code == 0, bake.output
    for option in ("use_pgbouncer", "use_read_replica"):
        for path in post_gen.MANIFEST[(option, True)]:
            assert (output_dir / "my_project" / path).exists() is meaning, path


def test_replay_bakes_the_answers_given_before(bake_cli, output_dir):
    bake_cli("use_pgbouncer=yes")
    shutil.rmtree(output_dir / "my_project")

    bake = bake_cli(replay=True)

    assert bake.exit_code == 0, bake.output
    for path in post_gen.MANIFEST[("use_pgbouncer", True)]:
        assert (output_dir / "my_project" / path).exists(), path


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


def test_bake_prints_next_steps_for_the_chosen_options_only(bake_cli):
    plain = bake_cli("ci=none").output
    assert "Next steps:" in plain
    assert "python3.12 -m venv" in plain
    assert "PgBouncer" not in plain
    assert ".github" not in plain


# --- answers reach the hooks intact ----------------------------------------------------------

AWKWARD = 'He said """hi""" and \'bye\' \\ C:\\new\\ \\" \U0001f600 é'


@pytest.mark.parametrize("hook", ["pre_gen_project", "post_gen_project"])
def test_answers_with_quotes_and_backslashes_reach_the_hook_unchanged(hook, tmp_path):
    given = answers(description=AWKWARD, author_name=AWKWARD + "\\")
    # Cookiecutter puts the answers given on the command line in _cookiecutter too.
    template = template_context(description=AWKWARD, author_name=AWKWARD + "\\")

    module = rendered_hook(hook, tmp_path, given, template)

    assert module.load_answers(module.ANSWERS_JSON) == given
    if hook == "pre_gen_project":
        assert json.loads(module.TEMPLATE_JSON) == template


def test_bake_accepts_free_text_with_quotes_and_backslashes(cookies):
    result = cookies.bake(template=str(REPO), extra_context={"project_name": AWKWARD})

    assert result.exception is None, result.exception


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
    assert pre_gen.validate(answers()) == []


def test_validate_reports_every_bad_answer_in_prompt_order():
    bad = answers(
        project_slug="1bad", author_email="x", python_version="3.11", django_version="6.1"
    )

    assert pre_gen.validate(bad) == [
        pre_gen.error_line("project_slug", "1bad", pre_gen.SLUG_RULE),
        pre_gen.error_line("author_email", "x", pre_gen.EMAIL_RULE),
        "ERROR: python_version '3.11' is not valid with django_version '6.1': Django 6.1 needs "
        "Python 3.12 or newer; choose python_version 3.12 or 3.13, or django_version 5.2",
    ]


def test_a_question_missing_from_the_answers_is_an_error():
    incomplete = answers()
    del incomplete["ci"]

    assert pre_gen.validate(incomplete) == [
        "ERROR: ci has no answer: cookiecutter.json and hooks/pre_gen_project.py disagree"
    ]


def test_error_line_keeps_any_value_on_one_line():
    line = pre_gen.error_line("description", "a\nb", pre_gen.SINGLE_LINE_RULE)
    assert "\n" not in line
    assert line.startswith("ERROR: description 'a\\nb' is not valid: ")


def test_pre_gen_main_prints_only_the_first_error_and_fails(monkeypatch, capsys):
    bad = answers(project_slug="class", author_email="x")
    monkeypatch.setattr(pre_gen, "ANSWERS_JSON", json.dumps(bad))

    assert pre_gen.main() == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [pre_gen.validate(bad)[0]]
    assert captured.out == ""


def test_pre_gen_main_accepts_good_answers_silently(monkeypatch, capsys):
    monkeypatch.setattr(pre_gen, "ANSWERS_JSON", json.dumps(answers()))

    assert pre_gen.main() == 0
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("hook", [pre_gen, post_gen], ids=["pre_gen", "post_gen"])
def test_unrendered_hook_refuses_to_run(hook):
    with pytest.raises(SystemExit, match=r"^ERROR: hooks/.* must be run by cookiecutter"):
        hook.main()


# --- post_gen_project manifest ----------------------------------------------------------------


def test_manifest_options_and_values_are_questions_and_answers_of_cookiecutter_json():
    for option, value in post_gen.MANIFEST:
        assert value in CHOICES.get(option, ()), (option, value)


def test_manifest_paths_are_relative_paths_inside_the_project():
    for path in post_gen.manifest_paths():
        assert post_gen._is_project_relative(path), path


@pytest.mark.parametrize("combination", all_option_combinations(), ids=combination_id)
def test_paths_to_remove_and_paths_to_keep_partition_the_manifest(combination):
    chosen = answers(**combination)
    remove = post_gen.paths_to_remove(chosen)
    keep = post_gen.paths_to_keep(chosen)

    assert set(remove).isdisjoint(keep)
    assert sorted(remove + keep) == sorted(post_gen.manifest_paths())


def test_a_path_is_removed_when_its_option_has_another_value():
    manifest = {("ci", "github"): [".github"], ("use_pgbouncer", True): ["deploy/pgbouncer"]}
    chosen = {"ci": "none", "use_pgbouncer": True}

    assert post_gen.paths_to_remove(chosen, manifest) == [".github"]
    assert post_gen.paths_to_keep(chosen, manifest) == ["deploy/pgbouncer"]


def test_a_path_under_two_options_is_kept_only_when_both_hold():
    manifest = {("use_pgbouncer", True): ["shared.py"], ("use_read_replica", True): ["shared.py"]}

    assert post_gen.paths_to_keep({"use_pgbouncer": True, "use_read_replica": True}, manifest) == [
        "shared.py"
    ]
    assert post_gen.paths_to_remove(
        {"use_pgbouncer": True, "use_read_replica": False}, manifest
    ) == ["shared.py"]


def test_manifest_errors_name_a_path_missing_from_the_generated_tree(tmp_path):
    (tmp_path / "present.py").touch()
    manifest = {("ci", "github"): ["present.py", "gone.py"]}

    assert post_gen.manifest_errors(tmp_path, {"ci": "none"}, manifest) == [
        "ERROR: MANIFEST path 'gone.py' (ci='github') does not exist in the generated project: "
        "fix MANIFEST in hooks/post_gen_project.py or add it to the template"
    ]


@pytest.mark.parametrize("path", ["../outside", "/etc/passwd", "a\\b", "./a", "a/", "a//b", "."])
def test_manifest_errors_refuse_paths_that_leave_or_misname_the_project(tmp_path, path):
    [error] = post_gen.manifest_errors(tmp_path, {"ci": "none"}, {("ci", "github"): [path]})
    assert error.startswith(f"ERROR: MANIFEST path {path!r} (ci='github') is not a relative path")


def test_manifest_errors_refuse_an_option_that_is_not_a_question(tmp_path):
    [error] = post_gen.manifest_errors(tmp_path, {"ci": "none"}, {("use_celery", True): []})
    assert error.startswith("ERROR: MANIFEST option 'use_celery' is not a template variable")


def test_remove_paths_deletes_files_and_directories_and_the_parents_they_leave_empty(tmp_path):
    for path in ["deploy/pgbouncer/pgbouncer.ini", "config/routers.py", "config/settings.py"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).touch()

    post_gen.remove_paths(tmp_path, ["deploy/pgbouncer", "config/routers.py"])

    assert everything_under(tmp_path) == ["config", "config/settings.py"]


def test_stale_manifest_path_makes_the_bake_fail_loudly(bake_cli, output_dir, tmp_path):
    template = tmp_path / "template"
    shutil.copytree(REPO / "hooks", template / "hooks")
    shutil.copy(REPO / "cookiecutter.json", template / "cookiecutter.json")
    shutil.copytree(REPO / PROJECT_TEMPLATE, template / PROJECT_TEMPLATE)
    hook = template / "hooks" / "post_gen_project.py"
    source = hook.read_text(encoding="utf-8")
    stale = source.replace(
        "MANIFEST = {", 'MANIFEST = {\n    ("use_pgbouncer", False): ["no/such.py"],'
    )
    assert stale != source
    hook.write_text(stale, encoding="utf-8")

    bake = bake_cli(template=template)

    assert bake.exit_code != 0
    assert error_lines(bake.output) == [
        "ERROR: MANIFEST path 'no/such.py' (use_pgbouncer=False) does not exist in the generated "
        "project: fix MANIFEST in hooks/post_gen_project.py or add it to the template"
    ]
    assert everything_under(output_dir) == []


# --- post_gen_project next steps --------------------------------------------------------------


def test_next_steps_use_the_chosen_python_and_database_name(tmp_path):
    steps = post_gen.next_steps(answers(project_slug="shop", python_version="3.13"), tmp_path)

    assert steps[0] == f"cd {tmp_path}"
    assert any(step.startswith("python3.13 -m venv .venv") for step in steps)
    assert any(step.startswith("createdb shop") for step in steps)
    for command in ["manage.py migrate", "manage.py runserver", "-m pytest"]:
        assert any(command in step for step in steps), command


def test_next_steps_mention_pgbouncer_replica_and_github_only_when_chosen(tmp_path):
    none = "\n".join(post_gen.next_steps(answers(ci="none"), tmp_path))
    every = "\n".join(
        post_gen.next_steps(
            answers(use_pgbouncer=True, use_read_replica=True, ci="github"), tmp_path
        )
    )

    for mention in ["PgBouncer", "replica", "GitHub"]:
        assert mention not in none
        assert mention in every


def test_next_steps_quote_a_project_path_with_spaces(tmp_path):
    steps = post_gen.next_steps(answers(), tmp_path / "my dir" / "my_project")
    assert steps[0] == f"cd '{tmp_path}/my dir/my_project'"
