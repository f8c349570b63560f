from django.urls import path

from models_app import views

app_name = "models_app"

urlpatterns = [
    path("", views.model_list, name="list"),
    path("huggingface/", views.hf_account, name="hf_account"),
    path("huggingface/disconnect/", views.hf_account_disconnect, name="hf_account_disconnect"),
    path("p/<uuid:public_id>/", views.model_public, name="public"),
    path("<int:pk>/", views.model_detail, name="detail"),
    path("<int:pk>/status/", views.model_status, name="status"),
    path("<int:pk>/samples/", views.model_sample_grid, name="sample_grid"),
    path("<int:pk>/rename/", views.model_rename, name="rename"),
    path("<int:pk>/visibility/", views.model_visibility, name="visibility"),
    path("<int:pk>/publish/", views.model_publish_retry, name="publish_retry"),
    path("<int:pk>/strength/", views.model_suggest_scale, name="suggest_scale"),
    path("<int:pk>/download/", views.model_download, name="download"),
    path("<int:pk>/delete/", views.model_delete, name="delete"),
]
