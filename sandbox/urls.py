"""The sandbox: local stand-ins that speak the vendors' real protocols (sandbox mode only).

/sandbox/replicate/v1/...  Replicate's HTTP API    (sandbox.replicate)
/sandbox/hf/...            Hugging Face Hub's API  (sandbox.huggingface)
/sandbox/stripe/v1/...     Stripe's API and a hosted checkout page (sandbox.stripe)
/sandbox/faults/           arm faults for tests and demos
"""

from django.urls import URLPattern, URLResolver, include, path

from sandbox import views

app_name = "sandbox"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.index, name="index"),
    path("faults/", views.faults, name="faults"),
]

urlpatterns += [
    path("replicate/", include("sandbox.replicate.urls")),
    path("hf/", include("sandbox.huggingface.urls")),
    path("stripe/", include("sandbox.stripe.urls")),
]
