from django.apps import AppConfig


class SandboxHuggingFaceConfig(AppConfig):
    name = "sandbox.huggingface"
    label = "sandbox_huggingface"
    verbose_name = "Sandbox: HuggingFace"
