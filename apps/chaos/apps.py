from django.apps import AppConfig


class ChaosConfig(AppConfig):
    """The fault-injection harness (``manage.py chaos``). The top layer: nothing imports it."""

    name = "apps.chaos"
    label = "chaos"
    verbose_name = "Fault injection"
