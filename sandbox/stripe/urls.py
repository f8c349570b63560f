"""Mounted at /sandbox/stripe/: STRIPE_API_BASE points here in sandbox mode, so the SDK calls v1/..."""

from __future__ import annotations

from django.urls import path

from sandbox.stripe import views

app_name = "stripe"

urlpatterns = [
    # The v1 API, as the stripe SDK calls it.
    path("v1/customers", views.customers_create, name="customers"),
    path("v1/customers/<str:object_id>", views.customers_retrieve, name="customer"),
    path("v1/prices", views.prices, name="prices"),
    path("v1/prices/<str:object_id>", views.prices_detail, name="price"),
    path("v1/products", views.products_create, name="products"),
    path("v1/checkout/sessions", views.checkout_sessions_create, name="checkout_sessions"),
    path("v1/checkout/sessions/<str:object_id>", views.checkout_sessions_retrieve, name="checkout_session"),
    path(
        "v1/checkout/sessions/<str:object_id>/expire",
        views.checkout_sessions_expire,
        name="checkout_session_expire",
    ),
    path("v1/billing_portal/sessions", views.billing_portal_sessions_create, name="billing_portal_sessions"),
    path("v1/events", views.events_list, name="events"),
    path("v1/events/<str:object_id>", views.events_retrieve, name="event"),
    path("v1/subscriptions/<str:object_id>", views.subscriptions_retrieve, name="subscription"),
    path("v1/invoices/<str:object_id>", views.invoices_retrieve, name="invoice"),
    path("v1/invoice_payments", views.invoice_payments_list, name="invoice_payments"),
    path("v1/payment_intents/<str:object_id>", views.payment_intents_retrieve, name="payment_intent"),
    path("v1/charges/<str:object_id>", views.charges_retrieve, name="charge"),
    # Hosted pages the buyer's browser is sent to.
    path("checkout/<str:session_id>/", views.checkout_page, name="checkout"),
    path("checkout/<str:session_id>/pay", views.checkout_pay, name="checkout_pay"),
    path("checkout/<str:session_id>/cancel", views.checkout_cancel, name="checkout_cancel"),
    path("portal/<str:portal_id>/", views.portal_page, name="portal"),
    path(
        "portal/<str:portal_id>/subscriptions/<str:subscription_id>/cancel",
        views.portal_cancel,
        name="portal_cancel",
    ),
    # Controls for tests and demos: what happens later at Stripe, made to happen now.
    path("subscriptions/<str:subscription_id>/renew", views.subscription_renew, name="subscription_renew"),
    path("charges/<str:charge_id>/refund", views.charge_refund, name="charge_refund"),
]
