from django.db import migrations, models

SEED = """
INSERT INTO benchapp_item (id, name, value)
SELECT g, 'item ' || g, g FROM generate_series(1, 10000) AS g
"""


class Migration(migrations.Migration):
    initial = True
    dependencies = []  # noqa: RUF012

    operations = [  # noqa: RUF012
        migrations.CreateModel(
            name="Item",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=40)),
                ("value", models.IntegerField()),
            ],
        ),
        migrations.RunSQL(SEED, reverse_sql="DELETE FROM benchapp_item"),
    ]
