from django.urls import path

from training import views, webhooks

app_name = "training"

urlpatterns = [
    path("", views.training_list, name="list"),
    path("new/", views.training_new, name="new"),
    path("<int:pk>/", views.training_detail, name="detail"),
    path("<int:pk>/row-status/", views.training_row_status, name="row_status"),
    path("<int:pk>/start/", views.training_start, name="start"),
    path("<int:pk>/estimate/", views.training_estimate, name="estimate"),
    path("<int:pk>/cancel/", views.training_cancel, name="cancel"),
    path("<int:pk>/retry/", views.training_retry, name="retry"),
    path("<int:pk>/duplicate/", views.training_duplicate, name="duplicate"),
    path("<int:pk>/samples/", views.training_samples, name="samples"),
    path("<int:pk>/samples/rerun/", views.training_samples_rerun, name="samples_rerun"),
    path("<int:pk>/dataset/", views.dataset_detail, name="dataset"),
    path("<int:pk>/dataset/upload/", views.dataset_upload, name="dataset_upload"),
    path("<int:pk>/dataset/captions/", views.dataset_caption_template, name="caption_template"),
    path("<int:pk>/dataset/captions/replace/", views.dataset_captions_replace, name="captions_replace"),
    path("<int:pk>/dataset/captions/download/", views.dataset_captions_export, name="captions_export"),
    path("<int:pk>/dataset/captions/import/", views.dataset_captions_import, name="captions_import"),
    path("<int:pk>/dataset/images/<int:image_pk>/caption/", views.image_caption, name="image_caption"),
    path("<int:pk>/dataset/images/<int:image_pk>/delete/", views.image_delete, name="image_delete"),
    path("<int:pk>/dataset/images/<int:image_pk>/thumbnail/", views.image_thumbnail, name="image_thumbnail"),
    path(
        "<int:pk>/dataset/images/<int:image_pk>/use-as-input/",
        views.image_use_as_input,
        name="image_use_as_input",
    ),
    path("webhooks/replicate/", webhooks.replicate_webhook, {"kind": "training"}, name="replicate_webhook"),
    path(
        "webhooks/replicate/caption/",
        webhooks.replicate_webhook,
        {"kind": "caption"},
        name="caption_webhook",
    ),
    path("<int:pk>/dataset/captioning/estimate/", views.caption_estimate, name="caption_estimate"),
    path("<int:pk>/dataset/captioning/", views.caption_start, name="caption_start"),
    path("<int:pk>/dataset/captioning/<int:batch_pk>/", views.caption_progress, name="caption_progress"),
    path("<int:pk>/dataset/captioning/<int:batch_pk>/cancel/", views.caption_cancel, name="caption_cancel"),
]
