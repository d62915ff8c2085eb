from django.db import migrations


class Migration(migrations.Migration):
    """Not atomic: each statement runs on its own, the first one stays if the second fails."""

    atomic = False
    dependencies = [("lock_app", "0002_note")]
    operations = [
        migrations.RunSQL(
            "ALTER TABLE lock_app_item ADD COLUMN a int",
            "ALTER TABLE lock_app_item DROP COLUMN a",
        ),
        migrations.RunSQL(
            "ALTER TABLE lock_app_other ADD COLUMN b int",
            "ALTER TABLE lock_app_other DROP COLUMN b",
        ),
    ]
