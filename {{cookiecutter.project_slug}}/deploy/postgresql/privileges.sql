-- What {{ cookiecutter.project_slug }} (the application) may do in the database it is connected
-- to: read and write the rows of every table {{ cookiecutter.project_slug }}_owner creates, now
-- or in a later migration, and nothing more. roles.sql runs it; run it again (as a superuser
-- or as the owner) in any other database of the project.
\set ON_ERROR_STOP on

-- PostgreSQL 15 and later: schema public belongs to the database owner, and nobody else may
-- create in it. Said here for older servers, which let every role create tables there.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO {{ cookiecutter.project_slug }};

-- Tables and sequences created from now on by the owner (every migration).
ALTER DEFAULT PRIVILEGES FOR ROLE {{ cookiecutter.project_slug }}_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {{ cookiecutter.project_slug }};
ALTER DEFAULT PRIVILEGES FOR ROLE {{ cookiecutter.project_slug }}_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO {{ cookiecutter.project_slug }};
-- Tables and sequences that already exist (a database migrated before the split).
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {{ cookiecutter.project_slug }};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {{ cookiecutter.project_slug }};
