from django.urls import path

from models_app import views

app_name = "models_app"

urlpatterns = [
    path("", views.model_list, name="list"),
    path("generate/", views.generate, name="generate"),
    path("generate/preview/", views.generate_preview, name="generate_preview"),
    path("generations/<int:pk>/", views.generation_detail, name="generation"),
    path("generations/<int:pk>/status/", views.generation_status, name="generation_status"),
    path("generations/<int:pk>/cancel/", views.generation_cancel, name="generation_cancel"),
    path("gallery/", views.gallery, name="gallery"),
    path("images/<int:pk>/", views.image_detail, name="image"),
    path("images/<int:pk>/download/", views.image_download, name="image_download"),
    path("images/<int:pk>/delete/", views.image_delete, name="image_delete"),
    path("images/<int:pk>/cover/", views.image_cover, name="image_cover"),
    path("webhooks/replicate/", views.replicate_webhook, name="replicate_webhook"),
    path("huggingface/", views.hf_account, name="hf_account"),
    path("huggingface/disconnect/", views.hf_account_disconnect, name="hf_account_disconnect"),
    path("p/<uuid:public_id>/", views.model_public, name="public"),
    path("<int:pk>/", views.model_detail, name="detail"),
    path("<int:pk>/status/", views.model_status, name="status"),
    path("<int:pk>/rename/", views.model_rename, name="rename"),
    path("<int:pk>/visibility/", views.model_visibility, name="visibility"),
    path("<int:pk>/publish/", views.model_publish_retry, name="publish_retry"),
    path("<int:pk>/download/", views.model_download, name="download"),
    path("<int:pk>/delete/", views.model_delete, name="delete"),
    path("<int:pk>/gallery/", views.model_gallery, name="model_gallery"),
]
