"""Specification of the template's questions: what cookiecutter.json asks, with which
defaults and texts, and the answers reaching both hooks intact, whatever their characters."""

import json

import pytest

from devtools.bakery import (
    ROOT,
    cookiecutter_json,
    no_input_answers,
    rendered_hook,
    template_context,
)

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
    defaults = no_input_answers()
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
    assert no_input_answers(project_name=project_name)["project_slug"] == slug


# --- answers reach the hooks intact ----------------------------------------------------------

AWKWARD = 'He said """hi""" and \'bye\' \\ C:\\new\\ \\" \U0001f600 é'


@pytest.mark.parametrize("hook", ["pre_gen_project", "post_gen_project"])
def test_answers_with_quotes_and_backslashes_reach_the_hook_unchanged(hook, tmp_path):
    given = no_input_answers(description=AWKWARD, author_name=AWKWARD + "\\")
    # Cookiecutter puts the answers given on the command line in _cookiecutter too.
    template = template_context(description=AWKWARD, author_name=AWKWARD + "\\")

    module = rendered_hook(hook, tmp_path, given, template)

    assert module.load_answers(module.ANSWERS_JSON) == given
    if hook == "pre_gen_project":
        assert json.loads(module.TEMPLATE_JSON) == template


def test_bake_accepts_free_text_with_quotes_and_backslashes(cookies):
    result = cookies.bake(template=str(ROOT), extra_context={"project_name": AWKWARD})

    assert result.exception is None, result.exception
