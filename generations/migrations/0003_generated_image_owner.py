"""Each generated image carries its generation's owner, so the gallery pages off one index. The column is
made required in 0004: on PostgreSQL, rows updated in a transaction cannot be followed by an ALTER of
their table in the same one ("pending trigger events").
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def owners_from_generations(apps, schema_editor):
    Generation = apps.get_model("generations", "Generation")
    GeneratedImage = apps.get_model("generations", "GeneratedImage")
    GeneratedImage.objects.update(
        owner_id=Subquery(Generation.objects.filter(pk=OuterRef("generation_id")).values("owner_id")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("generations", "0002_schedule_contenttypes_showcase"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="generatedimage",
            name="owner",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(owners_from_generations, migrations.RunPython.noop),
    ]
