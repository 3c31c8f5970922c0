from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    """Registers Prefect as the orchestrator of calculations (`calculations/orchestrator.py`), and the
    container engine's image look-up (`calculations/images.py`): the calculations app asks them and
    never imports Prefect or docker itself."""

    name = "workflows"

    def ready(self) -> None:
        # (an app's ready(), where Django allows its imports: the orchestrator's module imports no Prefect)
        from calculations.images import register_image_lookup
        from calculations.orchestrator import register_orchestrator
        from workflows.images import current_image_id
        from workflows.orchestration.orchestrator import PrefectOrchestrator

        register_orchestrator(PrefectOrchestrator())
        register_image_lookup(current_image_id)
