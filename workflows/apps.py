from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    """Registers Prefect as the orchestrator of calculations (`calculations/orchestrator.py`): the
    calculations app asks it to launch after commit and never imports Prefect itself."""

    name = "workflows"

    def ready(self) -> None:
        # (an app's ready(), where Django allows its imports: the orchestrator's module imports no Prefect)
        from calculations.orchestrator import register_orchestrator
        from workflows.orchestration.orchestrator import PrefectOrchestrator

        register_orchestrator(PrefectOrchestrator())
