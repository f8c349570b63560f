from django.urls import path

from api import views
from api.endpoints import api

app_name = "api"

# Ninja's own patterns (its namespace is ours: "api"), and the reference page beside them.
urlpatterns = [
    path("docs", views.reference, name="reference"),
    *api.urls[0],
]
