from django.apps import AppConfig


class {{ cookiecutter.project_slug.title().replace("_", "") }}Config(AppConfig):
    """The project's own application: models, views and templates go here."""

    name = "{{ cookiecutter.project_slug }}"
