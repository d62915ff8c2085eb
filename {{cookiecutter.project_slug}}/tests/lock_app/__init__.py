"""Migrations for ``tests/test_migration_locks.py``, installed by its tests only.

Plain SQL with no models: no model state, so ``makemigrations`` and ``migrate`` have nothing
to say about the app beyond its own migrations.
"""
