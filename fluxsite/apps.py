from django.apps import AppConfig


class FluxsiteConfig(AppConfig):
    name = "fluxsite"
    verbose_name = "Fluxsite"

    def ready(self) -> None:
        from fluxsite import checks  # noqa: F401  (registers the system checks)
        from fluxsite.logs import signals_connect

        signals_connect()  # the request id: cleared after each request, carried into django-q2 tasks
        from django_q.signals import post_execute_in_worker, pre_execute

        from fluxsite.health import task_running_forget, task_running_note

        # On Redis, the tasks running now (queue_status): the broker keeps no record of them.
        pre_execute.connect(task_running_note, dispatch_uid="fluxsite.health.running")
        post_execute_in_worker.connect(task_running_forget, dispatch_uid="fluxsite.health.ended")
