from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login, logout, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from fluxsite.accounts import services
from fluxsite.accounts.forms import AccountDeleteForm, EmailChangeForm, SignUpForm


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("training:list")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = services.user_sign_up(email=form.cleaned_data["email"], password=form.cleaned_data["password1"])
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, "Welcome to Fluxsite! Your welcome credits are in your balance.")
        return redirect("training:list")
    return render(request, "accounts/signup.html", {"form": form})


@login_required
@require_http_methods(["GET"])
def account(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/account.html", {
        "email_form": EmailChangeForm(user=request.user),
        "password_form": PasswordChangeForm(request.user),
        "delete_form": AccountDeleteForm(user=request.user),
    })


@login_required
@require_http_methods(["POST"])
def email_change(request: HttpRequest) -> HttpResponse:
    form = EmailChangeForm(request.POST, user=request.user)
    if form.is_valid():
        services.user_change_email(user=request.user, email=form.cleaned_data["email"])
        messages.success(request, "Your e-mail address was changed.")
        return redirect("accounts:account")
    return render(request, "accounts/account.html", {
        "email_form": form,
        "password_form": PasswordChangeForm(request.user),
        "delete_form": AccountDeleteForm(user=request.user),
    }, status=400)


@login_required
@require_http_methods(["POST"])
def password_change(request: HttpRequest) -> HttpResponse:
    form = PasswordChangeForm(request.user, request.POST)
    if form.is_valid():
        user = form.save()
        update_session_auth_hash(request, user)
        messages.success(request, "Your password was changed.")
        return redirect("accounts:account")
    return render(request, "accounts/account.html", {
        "email_form": EmailChangeForm(user=request.user),
        "password_form": form,
        "delete_form": AccountDeleteForm(user=request.user),
    }, status=400)


@login_required
@require_http_methods(["GET", "POST"])
def account_delete(request: HttpRequest) -> HttpResponse:
    form = AccountDeleteForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        user = request.user
        logout(request)
        services.user_delete(user=user)
        messages.success(request, "Your account and all its data were deleted.")
        return redirect("accounts:login")
    return render(request, "accounts/delete.html", {"form": form}, status=400 if form.errors else 200)
