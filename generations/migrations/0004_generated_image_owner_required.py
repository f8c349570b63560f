"""The owner copied in 0003 is required from now on, and indexed with the gallery's order."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("generations", "0003_generated_image_owner"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="generatedimage",
            name="owner",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddIndex(
            model_name="generatedimage",
            index=models.Index(fields=["owner", "-created_at", "-id"], name="generated_image_owner_newest"),
        ),
    ]
