"""docs/high-availability.md follows the options picked: its PgBouncer section (and every
mention of PgBouncer) only in bakes with ``use_pgbouncer``, rendered without leftover Jinja."""

import pytest

from devtools.bakery import bake


@pytest.mark.parametrize("use_pgbouncer", [False, True])
def test_the_ha_doc_mentions_pgbouncer_only_when_picked(tmp_path, use_pgbouncer):
    project = bake({"use_pgbouncer": use_pgbouncer}, tmp_path)
    doc = (project / "docs" / "high-availability.md").read_text()
    assert ("## With PgBouncer" in doc) is use_pgbouncer
    assert ("pgbouncer" in doc.lower()) is use_pgbouncer
    assert "{%" not in doc and "{{" not in doc
    assert "\n\n\n" not in doc  # no blank lines left where a block was cut
