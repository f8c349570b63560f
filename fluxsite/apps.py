from django.apps import AppConfig


class FluxsiteConfig(AppConfig):
    name = "fluxsite"
    verbose_name = "Fluxsite"

    def ready(self) -> None:
        from fluxsite import checks  # noqa: F401  (registers the system checks)
        from fluxsite.logs import signals_connect

        signals_connect()  # the request id: cleared after each request, carried into django-q2 tasks
