from django.apps import AppConfig


class SandboxReplicateConfig(AppConfig):
    name = "sandbox.replicate"
    label = "sandbox_replicate"
    verbose_name = "Sandbox: Replicate"
