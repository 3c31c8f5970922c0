from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    """Registers Prefect as the launcher of calculations (`calculations/launching.py`): the
    calculations app asks it to launch after commit and never imports Prefect itself."""

    name = "workflows"

    def ready(self) -> None:
        from calculations.launching import register_launcher
        from workflows.dispatch import PrefectLauncher

        register_launcher(PrefectLauncher())
