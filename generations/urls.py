from django.urls import path

from generations import views

app_name = "generations"

urlpatterns = [
    path("generate/", views.generate, name="generate"),
    path("generate/preview/", views.generate_preview, name="generate_preview"),
    path("generations/<int:pk>/", views.generation_detail, name="generation"),
    path("generations/<int:pk>/status/", views.generation_status, name="generation_status"),
    path("generations/<int:pk>/cancel/", views.generation_cancel, name="generation_cancel"),
    path("generations/<int:pk>/input/", views.generation_input, name="generation_input"),
    path("inputs/<int:pk>/", views.input_image_file, name="input_image_file"),
    path("generations/<int:pk>/mask/", views.generation_mask, name="generation_mask"),
    path("gallery/", views.gallery, name="gallery"),
    path("gallery/compare/", views.compare, name="compare"),
    path("images/<int:pk>/", views.image_detail, name="image"),
    path("images/<int:pk>/download/", views.image_download, name="image_download"),
    path("images/<int:pk>/delete/", views.image_delete, name="image_delete"),
    path("images/<int:pk>/cover/", views.image_cover, name="image_cover"),
    path("images/<int:pk>/upscale/", views.image_upscale, name="image_upscale"),
    path("<int:pk>/gallery/", views.model_gallery, name="model_gallery"),
]
