-- The database of {{ cookiecutter.project_slug }} and its two roles. Run once, on the primary, as a superuser:
--
--   sudo -u postgres psql -v owner_password="..." -v app_password="..." -f deploy/postgresql/roles.sql
--
-- {{ cookiecutter.project_slug }}_owner owns the schema: migrations and dbshell connect as it
-- (DATABASE_DIRECT_URL). {{ cookiecutter.project_slug }} is the application (DATABASE_URL): it
-- reads and writes rows and can change nothing else, so an SQL injection or a stray script
-- cannot drop or alter a table. docs/database-roles.md explains each statement.
\set ON_ERROR_STOP on

CREATE ROLE {{ cookiecutter.project_slug }}_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE {{ cookiecutter.project_slug }} LOGIN PASSWORD :'app_password';
CREATE DATABASE {{ cookiecutter.project_slug }} OWNER {{ cookiecutter.project_slug }}_owner;

-- Queries the application gave up on (DATABASE_QUERY_TIMEOUT closes its connection) stop on
-- the server too: the backend checks every second that its client is still there, and no
-- statement outlives the client's own bound. Set on the role, these reach every session of it,
-- through a pooler in transaction mode too (which refuses them as startup options).
-- Keep statement_timeout equal to DATABASE_QUERY_TIMEOUT (20 s by default).
ALTER ROLE {{ cookiecutter.project_slug }} SET client_connection_check_interval = '1s';
ALTER ROLE {{ cookiecutter.project_slug }} SET statement_timeout = '20s';
ALTER ROLE {{ cookiecutter.project_slug }} SET idle_in_transaction_session_timeout = '60s';

\connect {{ cookiecutter.project_slug }}
\ir privileges.sql
