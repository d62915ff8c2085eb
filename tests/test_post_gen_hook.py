"""Specification of hooks/post_gen_project.py: it removes the files of the options nobody
picked, as listed in its MANIFEST, and prints the next steps for the options picked.

Bakes run cookiecutter in-process (its CLI through click's runner, or pytest-cookies), so each
takes a fraction of a second.
"""

import shutil

import pytest

from devtools.bakery import (
    CHOICES,
    ROOT,
    combination_id,
    combinations,
    error_lines,
    everything_under,
    load_hook,
    no_input_answers,
)

PROJECT_TEMPLATE = "{{cookiecutter.project_slug}}"

pytestmark = pytest.mark.quick  # ./run-tests --quick

post_gen = load_hook("post_gen_project")


def all_option_combinations():
    """Every combination of answers to the options the manifest depends on."""
    return combinations(sorted({option for option, _ in post_gen.MANIFEST}))


# --- accepted answers -------------------------------------------------------------------------


def test_default_answers_bake_a_project_named_after_the_slug(cookies):
    result = cookies.bake(template=str(ROOT))

    assert result.exit_code == 0, result.exception
    assert result.exception is None
    assert result.project_path.name == "my_project"
    assert result.project_path.is_dir()


@pytest.mark.parametrize("combination", all_option_combinations(), ids=combination_id)
def test_bake_keeps_exactly_the_manifest_paths_of_the_chosen_options(cookies, combination):
    result = cookies.bake(template=str(ROOT), extra_context=combination)

    assert result.exception is None, result.exception
    chosen = no_input_answers(**combination)
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


def test_bake_prints_next_steps_for_the_chosen_options_only(bake_cli):
    plain = bake_cli("ci=none").output
    assert "Next steps:" in plain
    assert "python3.12 -m venv" in plain
    assert "PgBouncer" not in plain
    assert ".github" not in plain


# --- post_gen_project manifest ----------------------------------------------------------------


def test_manifest_options_and_values_are_questions_and_answers_of_cookiecutter_json():
    for option, value in post_gen.MANIFEST:
        assert value in CHOICES.get(option, ()), (option, value)


def test_manifest_paths_are_relative_paths_inside_the_project():
    for path in post_gen.manifest_paths():
        assert post_gen._is_project_relative(path), path


@pytest.mark.parametrize("combination", all_option_combinations(), ids=combination_id)
def test_paths_to_remove_and_paths_to_keep_partition_the_manifest(combination):
    chosen = no_input_answers(**combination)
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
    shutil.copytree(ROOT / "hooks", template / "hooks")
    shutil.copy(ROOT / "cookiecutter.json", template / "cookiecutter.json")
    shutil.copytree(ROOT / PROJECT_TEMPLATE, template / PROJECT_TEMPLATE)
    shutil.copytree(ROOT / "templates", template / "templates")  # the locks uv.lock includes
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
    steps = post_gen.next_steps(
        no_input_answers(project_slug="shop", python_version="3.13"), tmp_path
    )

    assert steps[0] == f"cd {tmp_path}"
    assert any(step.startswith("python3.13 -m venv .venv") for step in steps)
    assert any(step.startswith("createdb shop") for step in steps)
    for command in ["manage.py migrate", "manage.py runserver", "-m pytest"]:
        assert any(command in step for step in steps), command


def test_next_steps_mention_pgbouncer_replica_and_github_only_when_chosen(tmp_path):
    none = "\n".join(post_gen.next_steps(no_input_answers(ci="none"), tmp_path))
    every = "\n".join(
        post_gen.next_steps(
            no_input_answers(use_pgbouncer=True, use_read_replica=True, ci="github"), tmp_path
        )
    )

    for mention in ["PgBouncer", "replica", "GitHub"]:
        assert mention not in none
        assert mention in every


def test_next_steps_quote_a_project_path_with_spaces(tmp_path):
    steps = post_gen.next_steps(no_input_answers(), tmp_path / "my dir" / "my_project")
    assert steps[0] == f"cd '{tmp_path}/my dir/my_project'"


def test_unrendered_post_gen_hook_refuses_to_run():
    with pytest.raises(SystemExit, match=r"^ERROR: hooks/.* must be run by cookiecutter"):
        post_gen.main()
