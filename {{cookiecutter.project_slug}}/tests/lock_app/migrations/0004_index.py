from django.db import migrations


class Migration(migrations.Migration):
    """An index built without blocking writes: CONCURRENTLY, outside a transaction."""

    atomic = False
    dependencies = [("lock_app", "0003_two_tables")]
    operations = [
        migrations.RunSQL(
            "CREATE INDEX CONCURRENTLY lock_app_item_name ON lock_app_item (name)",
            "DROP INDEX CONCURRENTLY lock_app_item_name",
        ),
    ]
