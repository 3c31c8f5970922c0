from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    """Registers Prefect as the launcher of calculations (`calculations/launching.py`): the
    calculations app asks it to launch after commit and never imports Prefect itself."""

    name = "workflows"

    def ready(self) -> None:
        # (an app's ready(), where Django allows its imports: the launcher's module imports no Prefect)
        from calculations.launching import register_launcher
        from workflows.orchestration.launcher import PrefectLauncher

        register_launcher(PrefectLauncher())
