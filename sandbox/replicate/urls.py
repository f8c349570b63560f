"""Replicate's API paths, under /sandbox/replicate/ (the client's base URL)."""

from __future__ import annotations

from django.urls import path

from sandbox.replicate import views

app_name = "sandbox_replicate"

urlpatterns = [
    path("v1/models", views.models_create, name="models_create"),
    path("v1/models/<str:owner>/<str:name>", views.model_get, name="model_get"),
    path("v1/models/<str:owner>/<str:name>/versions/<str:version_id>", views.version_get, name="version_get"),
    path(
        "v1/models/<str:owner>/<str:name>/versions/<str:version_id>/trainings",
        views.training_create,
        name="training_create",
    ),
    path(
        "v1/models/<str:owner>/<str:name>/predictions",
        views.model_prediction_create,
        name="model_prediction_create",
    ),
    path("v1/trainings", views.training_list, name="training_list"),
    path("v1/trainings/<str:training_id>", views.training_get, name="training_get"),
    path("v1/trainings/<str:training_id>/cancel", views.training_cancel, name="training_cancel"),
    path("v1/predictions", views.prediction_create, name="prediction_create"),
    path("v1/predictions/<str:prediction_id>", views.prediction_get, name="prediction_get"),
    path("v1/predictions/<str:prediction_id>/cancel", views.prediction_cancel, name="prediction_cancel"),
    path("v1/webhooks/default/secret", views.webhook_secret, name="webhook_secret"),
    path(
        "v1/files/trainings/<str:training_id>/trained_model.tar",
        views.training_weights,
        name="training_weights",
    ),
    path(  # the Qwen trainer's output zip (sandbox/replicate/trainers.py)
        "v1/files/trainings/<str:training_id>/<str:file_name>",
        views.training_weights,
        name="training_weights_file",
    ),
    path(
        "v1/files/predictions/<str:prediction_id>/out-<int:index>.<str:extension>",
        views.prediction_file,
        name="prediction_file",
    ),
]
