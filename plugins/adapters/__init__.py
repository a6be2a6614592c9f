"""Built-in adapters for parameter-efficient fine-tuning. Factories are lazy import paths (no torch here)."""

from zoo.hookspecs import hookimpl


@hookimpl
def register_adapters(register):
    register(
        "lora",
        "zoo.plugins.adapters.lora:lora",
        description="LoRA: a low-rank update B·A·alpha/r on chosen linear layers (qkv, out, ffn); B starts at 0",
    )
