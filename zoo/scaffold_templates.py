"""The files `zoo plugin new` writes, as string.Template texts ($name, $module, $part, $class_name, $kind).
A task package (--kind task) holds a task and a head that serves it ($head_class).

Kept as Python strings so the templates ship inside the `zoo` package with no package-data set-up.
"""

from __future__ import annotations

from string import Template

from zoo.registry import HOOKS

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "$name"
version = "0.1.0"
description = "$description"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["zoo"]

[project.optional-dependencies]
test = ["pytest"]

# The entry point's name is the plugin name: config.json records it and `$name:$part` picks this part.
[project.entry-points.zoo]
$name = "$module"

[tool.setuptools]
packages = ["$module"]

[tool.pytest.ini_options]
testpaths = ["tests"]
# Import the tests without putting their folders on sys.path, so that a folder named like a package
# (a clone of zoo beside this one, say) never shadows the installed package.
addopts = "--import-mode=importlib"
"""

README = """\
# $name

$description: a plugin for zoo, the model zoo of transformer encoders assembled from named parts.
It registers $registers.

## Install

```console
pip install -e .
zoo parts --kind $kind          # lists '$part' from plugin '$name'
```

## Use

```console
$usage
```

## Develop

The tests run zoo's conformance kit (`zoo.testing`) on the $kind: forward and backward with every built-in
partner, padding invariance, save and load, determinism, ONNX and TorchScript parity.

```console
pip install -e '.[test]'
pytest                          # in this folder; `pytest $name` from the one above works too
```

The plugin's top-level module (`$module/__init__.py`) registers $parts_word by lazy import path, so
`zoo --help` and `zoo parts` never import torch or `$module.$kind`. Keep it that way.
See zoo's docs/plugins.md for the hooks, the factory contract and capabilities.
"""

INIT = """\
\"\"\"$name: zoo plugin module (the `zoo` entry point names it). It imports no torch: the part's
factory is registered as a lazy "module:attr" path and imported the first time a model uses it.\"\"\"
from zoo import hookimpl
from zoo.types import $register_type  # zoo.types imports no torch


@hookimpl
def $hook(register: $register_type) -> None:
    register("$part", "$module.$kind:$class_name", description="$description"$capabilities)
"""

INIT_TASK = """\
\"\"\"$name: zoo plugin module (the `zoo` entry point names it). It imports no torch: the task and the head
are registered as lazy "module:attr" paths and imported the first time a model uses them.\"\"\"
from zoo import hookimpl
from zoo.types import HeadRegister, TaskRegister  # zoo.types imports no torch


@hookimpl
def register_tasks(register: TaskRegister) -> None:
    register("$part", "$module.task:$class_name", description="$description")


@hookimpl
def register_heads(register: HeadRegister) -> None:
    register("$part", "$module.head:$head_class", task="$part",
             description="Mean pooling and a linear layer for task '$part'")
"""

ATTENTION = """\
\"\"\"The $part attention. zoo calls the class once per encoder layer with d_model, num_heads, dropout
and the user's options (here: `scale`, set with `--set attention.scale=0.5`).

Replace the body of `forward` with your variant; keep its contract:
    forward(x: (B, S, D) float, mask: (B, S) bool or None) -> (B, S, D); True in mask marks a real token.
\"\"\"
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from zoo.nn import dtype_min  # torch.finfo(dtype).min in a form torch.jit.script compiles

if TYPE_CHECKING:
    from zoo.types import AttentionFactory


class $class_name(nn.Module):
    def __init__(self, *, d_model: int, num_heads: int, dropout: float = 0.0, scale: float = 1.0):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.scale = scale / math.sqrt(self.head_dim)
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)  # active only in training mode

    def _heads(self, x: Tensor) -> Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, S, dh)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        batch, seq, d_model = x.shape
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        scores = (q @ k.transpose(-2, -1)) * self.scale  # (B, h, S, S)
        if mask is not None:  # padded keys get no weight
            scores = scores.masked_fill(~mask[:, None, None, :], dtype_min(scores.dtype))
        weights = self.dropout(torch.softmax(scores, dim=-1))
        out = (weights @ v).transpose(1, 2).reshape(batch, seq, d_model)  # (B, S, D)
        return self.out_proj(out)


if TYPE_CHECKING:  # a type checker checks the class against zoo's factory contract (zoo.types)
    _factory: AttentionFactory = $class_name
"""

ENCODER = """\
\"\"\"The $part encoder: pre-norm blocks around any zoo attention.

zoo calls the class with `attention` (a factory: call it once per layer), vocab_size, d_model, num_layers,
num_heads, ffn_dim, max_length, dropout and the user's options (here: `norm_eps`).
Contract: a `d_model` attribute, and forward(input_ids (B, S), mask (B, S) bool or None) -> (B, S, d_model).
\"\"\"
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from zoo.types import BoundAttention, EncoderFactory


class Block(nn.Module):
    def __init__(self, attention: nn.Module, d_model: int, ffn_dim: int, dropout: float, norm_eps: float):
        super().__init__()
        self.attention = attention
        self.attention_norm = nn.LayerNorm(d_model, eps=norm_eps)
        self.ffn_norm = nn.LayerNorm(d_model, eps=norm_eps)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), mask))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class $class_name(nn.Module):
    def __init__(self, *, attention: BoundAttention, vocab_size: int, d_model: int, num_layers: int,
                 num_heads: int, ffn_dim: int, max_length: int, dropout: float, norm_eps: float = 1e-5):
        super().__init__()
        self.d_model = d_model
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        # An attention that encodes positions itself (capability 'positions', e.g. ALiBi) needs no table.
        positions = attention.capabilities.get("positions", False)
        self.position_embedding = None if positions else nn.Embedding(max_length, d_model)
        self.blocks = nn.ModuleList(
            Block(attention(d_model=d_model, num_heads=num_heads, dropout=dropout), d_model, ffn_dim, dropout,
                  norm_eps)
            for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(d_model, eps=norm_eps)

    def forward(self, input_ids: Tensor, mask: Tensor | None = None) -> Tensor:
        x = self.token_embedding(input_ids)  # (B, S, D)
        if self.position_embedding is not None:
            x = x + self.position_embedding(torch.arange(input_ids.shape[1], device=input_ids.device))
        for block in self.blocks:
            x = block(x, mask)
        return self.final_norm(x)


if TYPE_CHECKING:  # a type checker checks the class against zoo's factory contract (zoo.types)
    _factory: EncoderFactory = $class_name
"""

HEAD = """\
\"\"\"The $part head: sequence classification over the mean of the real tokens' states.

zoo calls the class with d_model, num_labels, dropout and the user's options (here: `hidden_dim`).
Contract: forward(hidden (B, S, D), mask (B, S) bool or None) -> logits (B, num_labels), and
loss(logits, labels, mask) -> scalar, with labels as the task it serves collates them
($served: (B,) class indices).
\"\"\"
from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from zoo.types import HeadFactory


class $head_class(nn.Module):
    def __init__(self, *, d_model: int, num_labels: int, dropout: float, hidden_dim: int = 0):
        super().__init__()
        if hidden_dim < 0:
            raise ValueError(f"hidden_dim must be >= 0, got {hidden_dim}")
        width = hidden_dim or d_model
        self.project = nn.Sequential(nn.Linear(d_model, width), nn.GELU()) if hidden_dim else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, num_labels)

    def forward(self, hidden: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            pooled = hidden.mean(dim=1)
        else:  # padding must not move the mean
            weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, S, 1)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.classifier(self.dropout(self.project(pooled)))  # (B, num_labels)

    def loss(self, logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
        return F.cross_entropy(logits.float(), labels.long())


if TYPE_CHECKING:  # a type checker checks the class against zoo's factory contract (zoo.types)
    _factory: HeadFactory = $head_class
"""

TASK = """\
\"\"\"The $part task: what a label is, how a batch of labels is collated, how outputs are scored and printed.

This starting point is single-label classification: one label name per text, (B,) class indices for the
head's loss (head.py), accuracy as the main metric. Change what your task does differently; docs/plugins.md
(register_tasks) lists every member of zoo.tasks.Task and what zoo uses it for. Keep torch out of this
module's imports (import it inside collate and synthetic_labels): an ONNX export is served without torch.
\"\"\"
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.tasks import Outputs, Task, class_name, log_softmax, lookup, one_line, softmax

if TYPE_CHECKING:
    from zoo.data import Table
    from zoo.types import TaskFactory


class $class_name(Task):
    main_metric = "accuracy"         # picks the best epoch (set lower_is_better = True for an error)
    summary_metrics = ("accuracy",)  # printed after each epoch and by `zoo evaluate`
    # agreement() (int8 against fp32) is inherited: the argmax of each row, right for this task.

    def target(
        self, label: Any, index: dict[str, int], num_labels: int, text: Any, encoding: Any, where: str
    ) -> int:
        \"\"\"One raw label cell -> its target; a ValueError is reported with the file and line.\"\"\"
        return lookup(index, class_name(label))

    def collate(self, targets: list[Any]) -> Any:
        import torch

        return torch.tensor(targets, dtype=torch.long)  # the `labels` that head.loss receives

    def evaluate(self, outputs: Outputs, targets: list[Any], names: list[str] | None) -> dict[str, Any]:
        if not outputs:
            return {"n": 0, "accuracy": 0.0, "loss": 0.0}
        x, gold = np.stack(outputs).astype(np.float64), np.asarray(targets, dtype=np.int64)
        loss = float(-log_softmax(x)[np.arange(len(x)), gold].mean())  # head.loss, in numpy
        return {"n": len(gold), "accuracy": float((x.argmax(-1) == gold).mean()), "loss": loss}

    def predict(
        self,
        table: Table,
        encodings: Sequence[Any],
        outputs: Outputs,
        names: list[str] | None,
        top_k: int = 1,
    ) -> list[dict[str, Any]]:
        results = []
        for text, x in zip(table.texts, outputs):
            p, best = softmax(x.astype(np.float64)), int(x.argmax())
            label = names[best] if names and best < len(names) else str(best)
            results.append({"text": text, "label": label, "probability": float(p[best])})  # `zoo predict --json`
        return results

    def format_prediction(self, result: dict[str, Any]) -> str:
        return f"{result['label']}\\t{result['probability']:.4f}\\t{one_line(result['text'])}"  # `zoo predict`

    def synthetic_labels(self, batch: int, seq: int, num_labels: int, generator: Any) -> Any:
        import torch

        return torch.randint(0, num_labels, (batch,), generator=generator)  # shaped as collate makes them


if TYPE_CHECKING:  # a type checker checks the class against zoo's factory contract (zoo.types)
    _factory: TaskFactory = $class_name
"""

TEST = """\
\"\"\"$name's tests: zoo's conformance kit on the $kind, and a fast start-up.\"\"\"
import subprocess
import sys
from pathlib import Path

from zoo import testing
from zoo.manager import plugin_infos

PART = "$name:$part"  # 'plugin:name' stays unambiguous even if another plugin has a '$part' too


def test_the_plugin_is_installed_and_registers_its_part() -> None:
    info = {i.name: i for i in plugin_infos()}["$name"]
    assert info.errors == []
    assert info.parts == $parts


def test_the_${kind}_passes_the_conformance_kit() -> None:
    # $partners; export=False would skip the ONNX/TorchScript parity.
    testing.check_part("$kind", PART)


def test_importing_the_plugin_module_imports_no_torch(tmp_path: Path) -> None:
    \"\"\"`zoo --help` and `zoo parts` import $module/__init__.py; keep it torch-free.\"\"\"
    code = "import sys, $torch_free; assert 'torch' not in sys.modules"
    # run in an empty folder: a folder named zoo where pytest was started must not shadow the package
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
"""

FILES = {  # and $module/__init__.py: INIT, or INIT_TASK for a task and its head
    "pyproject.toml": PYPROJECT,
    "README.md": README,
    "tests/test_$module.py": TEST,
}
# The part modules each kind writes: a task package holds the task and a head that serves it.
PART_MODULES = {
    "attention": {"attention": ATTENTION},
    "encoder": {"encoder": ENCODER},
    "head": {"head": HEAD},
    "task": {"task": TASK, "head": HEAD},
}
PARTNERS = {
    "attention": "with every built-in encoder and the cls head",
    "encoder": "with every built-in attention and the cls head",
    "head": "on the default encoder with its own loss",
    "task": "with each head that serves it (head.py) on the default encoder",
}
USAGE = {
    "attention": "zoo build --arch transformer --attention $part --head cls --output my-model",
    "encoder": "zoo build --arch $part --attention sdpa --head cls --output my-model",
    "head": "zoo build --arch transformer --head $part --num-labels 3 --output my-model",
    "task": "zoo build --arch transformer --head $part --output my-model   # the head serves task '$part'\n"
    "zoo finetune my-model --train train.csv --eval dev.csv --output ft\n"
    "zoo evaluate ft --data test.csv",
}
CLASS_SUFFIX = {"attention": "Attention", "encoder": "Encoder", "head": "Head", "task": "Task"}
REGISTER_TYPES = {kind: f"{kind.capitalize()}Register" for kind in CLASS_SUFFIX}  # zoo.types


def render(*, name: str, module: str, part: str, class_name: str, kind: str) -> dict[str, str]:
    """{relative path: file text} for a new plugin package."""
    task = kind == "task"
    values = {
        "name": name,
        "module": module,
        "part": part,
        "class_name": class_name,
        "kind": kind,
        "head_class": class_name.removesuffix("Task") + "Head" if task else class_name,
        "hook": HOOKS[kind],
        "register_type": REGISTER_TYPES[kind],
        "partners": f"checked {PARTNERS[kind]}",
        "description": f"The '{part}' {kind} for zoo",
        "capabilities": ', task="classification"' if kind == "head" else "",
        "served": f'task "{part}" in task.py' if task else 'task "classification"',
        "registers": f"the task `{part}` and the head `{part}` that serves it"
        if task
        else f"the {kind} `{part}`",
        "parts_word": "its parts" if task else "the part",
        "parts": repr({"task": [part], "head": [part]} if task else {kind: [part]}).replace("'", '"'),
        "torch_free": f"{module}, {module}.task" if task else module,
    }
    values["usage"] = Template(USAGE[kind]).substitute(values)
    templates = {**FILES, "$module/__init__.py": INIT_TASK if task else INIT}
    templates.update({f"$module/{file}.py": text for file, text in PART_MODULES[kind].items()})
    return {
        Template(path).substitute(values): Template(text).substitute(values)
        for path, text in templates.items()
    }
