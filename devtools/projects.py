"""A baked project run against the harness's servers, and the databases it runs in.

Builds on :mod:`devtools.bakery`: a :class:`Project` is a baked directory, the shared
Python environment that has its dependencies, and the settings variables its commands and
its gunicorn get.
"""

from pathlib import Path

from psycopg import sql

from devtools.bakery import CHOICES, AppServer, bake, project_env, project_python, run
from devtools.harness import APP_USER


class Project:
    """A baked project: its directory (``path``), the Python that runs it (``python``) and
    the settings variables (``variables``) every command and server of it gets.

    A command's environment is :func:`~devtools.bakery.project_env` with ``variables``,
    unless the call passes an ``env`` of its own (see :meth:`env`).
    """

    def __init__(self, path, python, **variables):
        self.path = Path(path)
        self.python = Path(python)
        self.variables = variables

    @classmethod
    def bake(cls, answers, output_dir, *, modules=None, **variables):
        """Bake the template with ``answers`` into ``output_dir`` and return the project.

        ``modules`` (module name: source) are written into the project directory, which then
        goes on ``PYTHONPATH`` so that ``variables`` such as ``DJANGO_SETTINGS_MODULE`` can
        name them. The Python is the shared environment of the Django version baked
        (cookiecutter.json's first choice unless ``answers`` pick one).
        """
        path = bake(answers, output_dir)
        if modules:
            for name, source in modules.items():
                (path / f"{name}.py").write_text(source)
            variables["PYTHONPATH"] = str(path)
        version = answers.get("django_version", CHOICES["django_version"][0])
        return cls(path, project_python(path, version), **variables)

    def env(self, **variables):
        """The environment the project's commands run in: the current one without its own
        settings variables, plus the project's ``variables``, then these ``variables``."""
        return project_env(**{**self.variables, **variables})

    def run(self, *args, env=None, check=True, timeout=120):
        """Run the project's Python with ``args`` in its directory (see
        :func:`~devtools.bakery.run`); ``env`` defaults to :meth:`env`."""
        return run(
            [self.python, *args],
            cwd=self.path,
            env=self.env() if env is None else env,
            check=check,
            timeout=timeout,
        )

    def manage(self, *args, env=None, check=True, timeout=120):
        """Run ``manage.py`` with ``args``, as :meth:`run` does."""
        return self.run("manage.py", *args, env=env, check=check, timeout=timeout)

    def shell(self, code, *, no_imports=False, env=None, check=True, timeout=120):
        """Run ``code`` with ``manage.py shell -c`` (``--no-imports``: without the models
        Django imports for the shell), as :meth:`run` does."""
        options = ["--no-imports"] if no_imports else []
        return self.manage("shell", *options, "-c", code, env=env, check=check, timeout=timeout)

    def serve(self, env=None, *, options=()):
        """gunicorn serving the project on a free loopback port: an
        :class:`~devtools.bakery.AppServer`, ready once its ``with`` block starts.

        ``options`` go to gunicorn; ``env`` defaults to :meth:`env`.
        """
        return AppServer(
            self.python, self.path, self.env() if env is None else env, options=options
        )


def create_database(primary, name, owner=APP_USER):
    """Create database ``name`` on ``primary``, owned by role ``owner``.

    A database of that name is dropped first, its sessions ended (``WITH (FORCE)``).
    """
    database = sql.Identifier(name)
    primary.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
    primary.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(database, sql.Identifier(owner)))
