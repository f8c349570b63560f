from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from fluxsite.accounts import views
from fluxsite.accounts.forms import LoginForm
from fluxsite.password_reset import SiteUrlPasswordResetForm
from fluxsite.ratelimits import client_ip, posted_email, rate_limited

app_name = "accounts"

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("signup/sent/", views.signup_done, name="signup_done"),
    path("verify/resend/", views.verify_resend, name="verify_resend"),
    path("verify/<str:token>/", views.verify, name="verify"),
    path(
        "login/",
        auth_views.LoginView.as_view(authentication_form=LoginForm, redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.account, name="account"),
    path("email/", views.email_change, name="email_change"),
    path("password/", views.password_change, name="password_change"),
    path("tokens/", views.api_token_create, name="api_token_create"),
    path("tokens/<int:pk>/revoke/", views.api_token_revoke, name="api_token_revoke"),
    path("webhooks/", views.webhook_endpoint_create, name="webhook_endpoint_create"),
    path("webhooks/<int:pk>/delete/", views.webhook_endpoint_delete, name="webhook_endpoint_delete"),
    path("webhooks/<int:pk>/test/", views.webhook_endpoint_test, name="webhook_endpoint_test"),
    # Limited per address typed and per client: neither a mailbox nor our mail server can be flooded.
    path(
        "password-reset/",
        rate_limited("password_reset", posted_email, client_ip)(
            auth_views.PasswordResetView.as_view(
                form_class=SiteUrlPasswordResetForm,  # the link is built on SITE_URL, not the Host header
                success_url=reverse_lazy("accounts:password_reset_done"),
                email_template_name="registration/password_reset_email.txt",
                subject_template_name="registration/password_reset_subject.txt",
            )
        ),
        name="password_reset",
    ),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            success_url=reverse_lazy("accounts:password_reset_complete")
        ),
        name="password_reset_confirm",
    ),
    path("reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
]
