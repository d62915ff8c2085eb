from django.db import migrations


class Migration(migrations.Migration):
    operations = [
        migrations.RunSQL(
            "CREATE TABLE lock_app_item (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text)",
            "DROP TABLE IF EXISTS lock_app_item",
        ),
        migrations.RunSQL(
            "CREATE TABLE lock_app_other (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY)",
            "DROP TABLE IF EXISTS lock_app_other",
        ),
    ]
