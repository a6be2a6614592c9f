"""Fine-tuning: ``finetune(model, train, output=..., eval=..., config=TrainConfig(...))``."""
from .config import TrainConfig
from .loop import TrainResult, finetune

__all__ = ["TrainConfig", "TrainResult", "finetune"]
