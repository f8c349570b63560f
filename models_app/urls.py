from django.urls import path

from models_app import views

app_name = "models_app"

urlpatterns = [
    path("", views.model_list, name="list"),
    path("generate/", views.generate, name="generate"),
]
