from django.apps import AppConfig

from apps.core.checks import checks_register


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Platform"

    def ready(self) -> None:
        checks_register()
