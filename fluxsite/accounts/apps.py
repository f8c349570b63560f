from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "fluxsite.accounts"
    label = "accounts"
    verbose_name = "Accounts"
