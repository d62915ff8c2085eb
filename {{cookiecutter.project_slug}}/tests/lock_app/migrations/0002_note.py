from django.db import migrations


class Migration(migrations.Migration):
    """Atomic, as migrations are by default: a try that times out is rolled back whole."""

    dependencies = [("lock_app", "0001_tables")]
    operations = [
        migrations.RunSQL(
            "ALTER TABLE lock_app_item ADD COLUMN note text",
            "ALTER TABLE lock_app_item DROP COLUMN note",
        ),
    ]
