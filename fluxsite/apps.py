from django.apps import AppConfig


class FluxsiteConfig(AppConfig):
    name = "fluxsite"
    verbose_name = "Fluxsite"

    def ready(self) -> None:
        from fluxsite import checks  # noqa: F401  (registers the system checks)
