"""Fine-tuning: ``finetune(model, train, output=..., eval=..., config=TrainConfig(...))``.

The recipe (and torch) load on first use, so ``zoo.training.config`` is cheap to import for the CLI."""

from typing import Any

from .config import TrainConfig

__all__ = ["FineTuneRecipe", "TrainConfig", "TrainResult", "TrainState", "finetune"]


def __getattr__(name: str) -> Any:
    if name in ("FineTuneRecipe", "TrainResult", "finetune"):
        from . import recipe

        return getattr(recipe, name)
    if name == "TrainState":
        from .state import TrainState

        return TrainState
    raise AttributeError(f"module 'zoo.training' has no attribute {name!r}")
