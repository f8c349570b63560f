"""After the move: the poller's schedule names the new task module, the admin's content types and
permissions follow the models, and each model's showcase is filled from its latest images."""

from django.db import migrations

SHOWCASE_SIZE = 8


def forward(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(func="models_app.tasks.generations_reconcile_task").update(
        func="generations.tasks.generations_reconcile_task"
    )
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="generations").exists():
        ContentType.objects.filter(app_label="models_app", model__in=["generation", "generatedimage"]).update(
            app_label="generations"
        )
    LoraModel = apps.get_model("models_app", "LoraModel")
    GeneratedImage = apps.get_model("generations", "GeneratedImage")
    for model in LoraModel.objects.all().iterator():
        images = (
            GeneratedImage.objects.filter(generation__lora_model_id=model.pk, generation__owner_id=model.owner_id)
            .select_related("generation")
            .order_by("-created_at", "-pk")[:SHOWCASE_SIZE]
        )
        model.showcase = [
            {
                "id": image.pk,
                "file_name": image.file_name,
                "thumbnail_name": image.thumbnail_name,
                "prompt": image.generation.effective_prompt,
            }
            for image in images
        ]
        model.save(update_fields=["showcase"])


def backward(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(
        func="generations.tasks.generations_reconcile_task"
    ).update(func="models_app.tasks.generations_reconcile_task")
    apps.get_model("contenttypes", "ContentType").objects.filter(app_label="generations").update(
        app_label="models_app"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("generations", "0001_initial"),
        ("models_app", "0004_generations_to_their_own_app"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(forward, backward)]
