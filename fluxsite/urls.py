from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from fluxsite import views
from training import webhooks

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("healthz/ready", views.healthz_ready, name="healthz_ready"),
    path("files/<str:token>", views.signed_file, name="signed_file"),
    path("admin/", admin.site.urls),
    path("account/delete/", views.account_delete, name="account_delete"),  # reaches into every app
    path("account/", include("fluxsite.accounts.urls")),
    path("trainings/", include("training.urls")),
    path("models/", include("models_app.urls")),
    path("models/", include("generations.urls")),  # generate, gallery, images: under /models/ as before
    # Replicate's prediction webhooks: the same view as the trainings' (one recording, one dispatch).
    path(
        "models/webhooks/replicate/",
        webhooks.replicate_webhook,
        {"kind": "prediction"},
        name="replicate_prediction_webhook",
    ),
    path("billing/", include("billing.urls")),
    path("api/v1/", include("api.urls")),  # the developer API (api/), its OpenAPI document and reference
]

if settings.SANDBOX_MODE:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)

handler404 = "fluxsite.views.page_not_found"
handler500 = "fluxsite.views.server_error"
