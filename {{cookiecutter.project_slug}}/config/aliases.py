"""The names of the database aliases. Every other module takes them from here."""

DEFAULT = "default"
{% if cookiecutter.use_pgbouncer %}
DIRECT = "direct"  # DEFAULT goes through PgBouncer; DIRECT reaches the primary itself.
PRIMARIES = (DEFAULT, DIRECT)
{% else %}
PRIMARIES = (DEFAULT,)
{% endif %}
{% if cookiecutter.use_read_replica %}
REPLICA_PREFIX = "replica"  # replica1, replica2, ... in the order of DATABASE_REPLICA_URLS
{% endif %}
