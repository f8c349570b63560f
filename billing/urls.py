from django.urls import path

from billing import views

app_name = "billing"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("pricing/", views.pricing, name="pricing"),
    path("checkout/pack/<int:pk>/", views.checkout_pack, name="checkout_pack"),
    path("checkout/plan/<int:pk>/", views.checkout_plan, name="checkout_plan"),
    path("checkout/success/", views.checkout_success, name="checkout_success"),
    path("portal/", views.portal, name="portal"),
    path("balance/", views.balance_pill, name="balance_pill"),
    path("webhooks/stripe/", views.stripe_webhook, name="stripe_webhook"),
]
