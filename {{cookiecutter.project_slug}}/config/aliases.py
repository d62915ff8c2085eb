"""The names of the database aliases. Every other module takes them from here."""

DEFAULT = "default"  # the application's role: it reads and writes rows
# The primary itself, as the schema's owner: migrations and sessions (DATABASE_DIRECT_URL).
DIRECT = "direct"
PRIMARIES = (DEFAULT, DIRECT)
{% if cookiecutter.use_read_replica %}
REPLICA_PREFIX = "replica"  # replica1, replica2, ... in the order of DATABASE_REPLICA_URLS
{% endif %}
