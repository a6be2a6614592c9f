"""The model spec: which parts, their options and sizes, labels, tokenizer settings; it *is* config.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .constants import CONFIG_NAME, TOKENIZER_NAME, WEIGHTS_NAME  # noqa: F401  (re-exported)
from .errors import ZooError, did_you_mean
from .io import read_json
from .registry import MODEL_PARTS

FORMAT_VERSION = 2  # 2: parts.task (version 1 directories load: their task is the one their head serves)

# The size options every encoder and head understands, and their defaults.
SIZE_DEFAULTS: dict[str, Any] = {
    "vocab_size": 8192,  # a from-scratch model trains a WordPiece tokenizer of this size
    "d_model": 256,  # hidden width
    "num_layers": 4,
    "num_heads": 4,
    "ffn_dim": None,  # feed-forward width; None means 4 * d_model
    "max_length": 512,  # longest sequence (position table size)
    "num_labels": 2,
    "dropout": 0.1,
}
ENCODER_SIZES = ("vocab_size", "d_model", "num_layers", "num_heads", "ffn_dim", "max_length", "dropout")


def check_sizes(sizes: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and validate the size options; every problem is a one-line ZooError."""
    for key in sizes:
        if key not in SIZE_DEFAULTS:
            raise ZooError(
                f"unknown option '{key}'{did_you_mean(key, SIZE_DEFAULTS) or ';'} "
                f"choices: {', '.join(SIZE_DEFAULTS)}"
            )
    out = {**SIZE_DEFAULTS, **{k: v for k, v in sizes.items() if v is not None}}
    if out["ffn_dim"] is None:
        out["ffn_dim"] = 4 * out["d_model"]
    for key in ("vocab_size", "d_model", "num_layers", "num_heads", "ffn_dim", "max_length", "num_labels"):
        if not isinstance(out[key], int) or isinstance(out[key], bool) or out[key] < 1:
            raise ZooError(f"{key} must be a positive integer, got {out[key]!r}")
    if not isinstance(out["dropout"], (int, float)) or not 0 <= out["dropout"] < 1:
        raise ZooError(f"dropout must be in [0, 1), got {out['dropout']!r}")
    if out["d_model"] % out["num_heads"]:
        raise ZooError(f"d_model ({out['d_model']}) must be divisible by num_heads ({out['num_heads']})")
    return out


@dataclass
class PartChoice:
    name: str
    plugin: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.plugin}:{self.name}"


@dataclass
class ModelSpec:
    encoder: PartChoice
    attention: PartChoice
    head: PartChoice
    sizes: dict[str, Any]
    labels: list[str] | None = None
    tokenizer: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # provenance: source checkpoint, training run
    task: PartChoice | None = None  # None only while reading a version-1 config (zoo.model fills it in)

    @property
    def task_choice(self) -> PartChoice:
        """``task``, once set: every spec zoo hands out has one (a version-1 config gets its head's task)."""
        if self.task is None:
            raise ZooError("the model spec names no task yet")
        return self.task

    def to_dict(self) -> dict[str, Any]:
        from .constants import VERSION as __version__

        return {
            "format_version": FORMAT_VERSION,
            "zoo_version": __version__,
            "parts": {k: dict(getattr(self, k).__dict__) for k in MODEL_PARTS},
            "sizes": self.sizes,
            "labels": self.labels,
            "tokenizer": self.tokenizer,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = CONFIG_NAME) -> ModelSpec:
        def bad(what: str) -> ZooError:
            return ZooError(f"{source}: {what}")

        if not isinstance(data, dict):
            raise bad("expected a JSON object")
        version = data.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise bad("missing or invalid 'format_version'")
        if version > FORMAT_VERSION:
            raise bad(
                f"format version {version} is newer than this zoo understands ({FORMAT_VERSION}); upgrade zoo"
            )
        parts = data.get("parts")
        if not isinstance(parts, dict):
            raise bad("missing or invalid 'parts'")
        choices: dict[str, PartChoice] = {}
        for kind in MODEL_PARTS:
            p = parts.get(kind)
            if kind == "task" and p is None and version < 2:
                continue
            if not (
                isinstance(p, dict)
                and isinstance(p.get("name"), str)
                and isinstance(p.get("plugin"), str)
                and isinstance(p.get("options", {}), dict)
            ):
                raise bad(f"'parts.{kind}' must be an object with string 'name' and 'plugin'")
            choices[kind] = PartChoice(p["name"], p["plugin"], dict(p.get("options", {})))
        sizes = data.get("sizes")
        if not isinstance(sizes, dict):
            raise bad("missing or invalid 'sizes'")
        try:
            sizes = check_sizes(sizes)
        except ZooError as exc:
            raise bad(str(exc)) from None
        labels = data.get("labels")
        if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
            raise bad("'labels' must be a list of strings")
        tokenizer, extra = data.get("tokenizer", {}), data.get("extra", {})
        if not isinstance(tokenizer, dict) or not isinstance(extra, dict):
            raise bad("'tokenizer' and 'extra' must be objects")
        return cls(
            choices["encoder"],
            choices["attention"],
            choices["head"],
            sizes,
            labels,
            tokenizer,
            extra,
            choices.get("task"),
        )

    @classmethod
    def read(cls, directory: str | Path) -> ModelSpec:
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise ZooError(f"{directory}: not a zoo model directory (no {CONFIG_NAME})")
        return cls.from_dict(read_json(path), str(path))
