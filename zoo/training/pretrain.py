"""Pre-training with masked language modelling, as a recipe on top of the fine-tuning one: the same
device placement, DDP, optimizer, checkpoints (resumable to the same weights), signals, NaN stop and
loggers; what differs is the data (a packed, streamed corpus with dynamic masking), the length of the run
(``max_steps`` or a ``time_budget`` instead of epochs; an "epoch" here is ``eval_every`` steps, after which
the held-out blocks are scored and the model is saved) and the loss (sparse: only masked positions are
decoded)."""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from zoo import device as D
from zoo import io
from zoo.constants import IGNORE_INDEX, STATE_NAME
from zoo.errors import ZooError
from zoo.tokenizer import pad_id

from .batching import micro_batch
from .corpus import Corpus, documents
from .masking import MaskingConfig, mask_tokens
from .prepare import fit_tokenizer, load_start_model, max_length
from .pretrain_config import PretrainConfig, parse_duration
from .progress import Progress
from .recipe import FineTuneRecipe, StopRequest, TrainResult, _NoLock
from .state import model_from_state, read_state

if TYPE_CHECKING:
    from zoo.model import ZooModel


class SparseMLM(nn.Module):
    """The model as pre-training runs it (and DDP wraps it): encode, decode only the masked positions, and
    return the loss. The head gets hidden states of shape (N, D), one row per masked token."""

    def __init__(self, model: ZooModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor) -> Tensor:
        hidden = self.model.encoder(input_ids, attention_mask.bool())
        chosen = labels != IGNORE_INDEX
        head: Any = self.model.head
        loss: Tensor = head.loss(head(hidden[chosen]), labels[chosen])
        return loss


class PretrainProgress(Progress):
    """A line every ``log_every`` steps: step, MLM loss, tokens/s, time against the budget."""

    def __init__(self, enabled: bool, log_every: int, max_steps: int | None, budget: float | None):
        super().__init__(enabled, log_every=log_every)
        self.tty, self.max_steps, self.budget, self.elapsed = False, max_steps, budget, 0.0

    def on_step(self, state, loss: float, lr: float, tokens: int, tokens_per_s: float) -> None:
        self.tokens += tokens
        self.loss = loss
        if self.enabled and state.step % self.log_every == 0:
            of = f"/{self.max_steps}" if self.max_steps else ""
            budget = f"/{self.budget:.0f}s" if self.budget else "s"
            print(
                f"step {state.step}{of} mlm loss {loss:.4f} lr {lr:.2e} {self.tokens_per_s():,.0f} tok/s "
                f"time {self.elapsed:.0f}{budget}",
                file=self.stream,
                flush=True,
            )


class PretrainRecipe(FineTuneRecipe):
    config: PretrainConfig

    def setup(self, model: Any, data, eval=None, *, resume: bool, overwrite: bool, columns: dict[str, Any]):
        if not resume:
            self._check_output(overwrite)
        saved = read_state(self.output / STATE_NAME) if resume else None
        if saved is not None:
            try:
                config = PretrainConfig.from_dict(saved[1]["config"])
                assert isinstance(config, PretrainConfig)
                self.config = config
            except TypeError as exc:
                raise ZooError(f"{self.output / STATE_NAME}: damaged training checkpoint ({exc})") from None
        self.budget = parse_duration(self.config.time_budget)
        self.elapsed = float((saved[1].get("pretrain") or {}).get("elapsed_s", 0.0)) if saved else 0.0
        self._place()
        self.progress = self.pretrain_progress = PretrainProgress(
            self.show_progress and self.env.is_main, self.config.log_every, self.config.max_steps, self.budget
        )
        self._data(model, data, eval, saved, columns)
        self._optimizer(saved)
        if self.config.pretrain_dropout != self.model.spec.sizes["dropout"]:
            for module in self.model.modules():  # the saved model keeps its own dropout (spec sizes)
                if isinstance(module, nn.Dropout):
                    module.p = self.config.pretrain_dropout
        self.wrapped = self._wrap()
        self.loggers = self._loggers()

    def _data(self, model: Any, data, eval, saved, columns: dict[str, Any]) -> None:
        cfg = self.config
        if saved is not None:
            self.model, _ = model_from_state(self.output / STATE_NAME, *saved)
        else:
            self.model = load_start_model(model, cfg.seed)
        self.task = self.model.task
        if not getattr(self.task, "pretraining", False):
            raise ZooError(
                f"the model's head '{self.model.spec.head.name}' serves task '{self.task.name}'; pre-training "
                "needs an mlm head (zoo build ... --head mlm, or --from-pretrained DIR --head mlm)"
            )
        text_column = cfg.text_column or columns.get("text_column")
        corpus_args = {"text_column": text_column, "encoding": columns.get("encoding")}
        if saved is None:
            if self.model.tokenizer is None:
                self.progress.note(f"zoo: training a WordPiece tokenizer on {data}")
                fit_tokenizer(self.model, documents(data, cfg.holdout, False, **corpus_args), str(data))
            spec = self.model.spec
            spec.tokenizer["max_length"] = max_length(self.model, cfg.max_length)
            spec.tokenizer.setdefault("pad_id", pad_id(self.model.tokenizer))
        tokenizer, spec = self.model.tokenizer, self.model.spec
        vocab = tokenizer.get_vocab_size()
        if vocab > spec.sizes["vocab_size"]:
            raise ZooError(
                f"the tokenizer has {vocab} tokens but the model's vocab_size is {spec.sizes['vocab_size']}"
            )
        self.corpus = Corpus(
            data,
            tokenizer,
            spec.tokenizer["max_length"],
            holdout=cfg.holdout,
            shuffle=cfg.shuffle_blocks,
            seed=cfg.seed,
            **corpus_args,
        )
        mask_id = tokenizer.token_to_id("[MASK]")
        if mask_id is None:
            raise ZooError("the model's tokenizer has no [MASK] token")
        specials = [tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")]
        self.masking = MaskingConfig(
            mask_id, tuple(i for i in specials if i is not None), vocab, cfg.mask_rate
        )
        self.eval_data = self.corpus.eval_blocks(cfg.eval_blocks)
        if self.eval_data is None:
            self.progress.note("zoo: no held-out blocks (a small corpus or --holdout 0); no eval loss")
        self.names, self.train_ids, self.train_keys = [], [], None
        self.train_source = str(data)

    def _schedule(self) -> None:
        self.steps_per_epoch = self.config.eval_every
        self.total_steps = self.config.max_steps or 0
        self.warmup = 0

    def fraction(self, step: int) -> float:
        """How far the run is: the larger of steps and time against their limits."""
        cfg, done = self.config, 0.0
        if cfg.max_steps:
            done = step / cfg.max_steps
        if self.budget:
            done = max(done, self.elapsed / self.budget)
        return min(1.0, done)

    def lr_factor(self, step: int) -> float:
        cfg, x = self.config, self.fraction(step)
        if cfg.warmup_ratio and x < cfg.warmup_ratio:
            return max(x / cfg.warmup_ratio, 1e-3)
        if cfg.schedule == "wsd":
            start = 1 - cfg.decay_ratio
            return 1.0 if x < start else max(0.0, (1 - x) / max(cfg.decay_ratio, 1e-9))
        return max(0.0, (1 - x) / max(1 - cfg.warmup_ratio, 1e-9))

    def _wrap(self):
        self.sparse = SparseMLM(self.model)
        if not self.env.distributed:
            return self.sparse
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
        return DistributedDataParallel(self.sparse, device_ids=ids)

    def forward_loss(self, batch: dict[str, Any]) -> Tensor:
        with D.autocast(self.device, self.precision):
            return self.wrapped(batch["input_ids"], batch["attention_mask"], batch["labels"])

    def _generator(self, *key: int) -> torch.Generator:
        seed = int(np.random.SeedSequence([self.config.seed, *key]).generate_state(1)[0])
        return torch.Generator().manual_seed(seed)

    def _loader(self, _batches=None):
        """(micro-batch, global rows, rows) for every micro-step from the current step on. The whole global
        batch is masked with the step's generator, then cut into this process's micro-batches, so the masks
        do not depend on the number of processes or accumulation steps."""
        cfg, env = self.config, self.env
        blocks = self.corpus.train_blocks(skip=self.state.step * cfg.batch_size)
        for step in itertools.count(self.state.step + 1):
            chunk = list(itertools.islice(blocks, cfg.batch_size))
            ids = torch.from_numpy(np.stack([b[0] for b in chunk]))
            starts = torch.from_numpy(np.stack([b[1] for b in chunk])) if cfg.whole_word else None
            inputs, labels = mask_tokens(ids, self.masking, self._generator(step), starts)
            for micro in range(cfg.grad_accum):
                rows = torch.from_numpy(
                    micro_batch(np.arange(len(chunk)), micro, cfg.grad_accum, env.rank, env.world_size)
                )
                batch = {
                    "input_ids": inputs[rows],
                    "attention_mask": torch.ones_like(inputs[rows]),
                    "labels": labels[rows],
                }
                yield batch, max(len(chunk), cfg.grad_accum * env.world_size), len(rows)

    def _finished(self) -> bool:
        cfg = self.config
        done = bool(cfg.max_steps and self.state.step >= cfg.max_steps) or bool(
            self.budget and self.elapsed >= self.budget
        )
        return self._agree(done)

    def train(self) -> TrainResult:
        state = self.state
        with StopRequest(self.progress) as stop:
            self.stop = stop
            pending = self._loader()
            while not self._finished():
                self.progress.start_epoch(state.epoch + 1, 0, 0, state.batch)
                round_loss, round_rows, round_start = 0.0, 0, time.perf_counter()
                while True:
                    tick = time.perf_counter()
                    loss, rows, tokens = self.train_step(pending, state.step + 1)
                    self.elapsed += time.perf_counter() - tick
                    self.pretrain_progress.elapsed = self.elapsed
                    state.batch += 1
                    state.step += 1
                    state.losses.append([state.step, loss])
                    round_loss, round_rows = round_loss + loss * rows, round_rows + rows
                    lr = self.optimizer.param_groups[0]["lr"]
                    for logger in self.loggers:
                        logger.on_step(
                            state, loss, lr, tokens * self.env.world_size, self.progress.tokens_per_s()
                        )
                    finished = self._finished()
                    if self._agree(stop.requested) and not finished:
                        self.save_checkpoint()
                        self.progress.note(f"zoo: interrupted at step {state.step}; continue with --resume")
                        return self._result(interrupted=True)
                    if finished or state.batch >= self.config.eval_every:
                        break
                self.end_epoch(
                    round_loss / max(1, round_rows),
                    round_rows,
                    time.perf_counter() - round_start,
                    self.progress.tokens_per_s(),
                )
        self.progress.note(
            f"zoo: pre-trained {state.step} steps in {self.elapsed:.1f}s of training; model in {self.output}"
        )
        return self._result(interrupted=False)

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any] | None:
        """MLM loss and accuracy on the held-out blocks, masked the same way at every evaluation."""
        if self.eval_data is None:
            return None
        ids, starts = (torch.from_numpy(a) for a in self.eval_data)
        inputs, labels = mask_tokens(
            ids, self.masking, self._generator(1 << 30), starts if self.config.whole_word else None
        )
        self.model.eval()
        total, correct, count = 0.0, 0, 0
        try:
            for at in range(0, len(ids), self.config.eval_batch_size):
                x = inputs[at : at + self.config.eval_batch_size].to(self.device)
                y = labels[at : at + self.config.eval_batch_size].to(self.device)
                with D.autocast(self.device, self.precision):
                    hidden = self.model.encoder(x, torch.ones_like(x, dtype=torch.bool))
                    chosen = y != IGNORE_INDEX
                    logits = self.model.head(hidden[chosen]).float()
                target = y[chosen]
                total += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
                correct += int((logits.argmax(-1) == target).sum())
                count += int(target.numel())
        finally:
            self.model.train()
        loss = total / max(1, count)
        return {"loss": loss, "accuracy": correct / max(1, count), "perplexity": math.exp(min(loss, 50.0))}

    def save_model(self) -> None:
        self.model.spec.extra.pop("training", None)
        self.model.spec.extra["pretraining"] = {
            "data": self.train_source,
            "steps": self.state.step,
            "tokens": self.state.step * self.config.batch_size * self.corpus.length,
            "seconds": round(self.elapsed, 2),
            "eval": (self.state.history[-1].get("eval") if self.state.history else None),
            "config": self.config.to_dict(),
            "world_size": self.env.world_size,
            "device": self.device,
            "precision": self.precision,
        }
        self.model.save(self.output)

    def checkpoint_info(self) -> dict[str, Any]:
        return {**super().checkpoint_info(), "pretrain": {"elapsed_s": self.elapsed}}


def pretrain(
    model: Any,
    data: str | Path,
    *,
    output: str | Path,
    config: PretrainConfig | None = None,
    text_column: str | None = None,
    encoding: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_step=None,
) -> TrainResult:
    """Pre-train ``model`` (a ZooModel or a model directory with an mlm head) on a text corpus (.txt, one
    document per line; .jsonl or .csv with a text column). ``output`` becomes a model directory (saved after
    every evaluation), with metrics.jsonl and trainer_state.safetensors for ``resume``."""
    env = D.dist_env()
    output = Path(output)
    with io.directory_lock(output) if env.is_main else _NoLock():
        recipe = PretrainRecipe(
            env, output, config or PretrainConfig(max_steps=1000), progress=progress, on_step=on_step
        )
        finished = False
        try:
            recipe.setup(
                model,
                data,
                resume=resume,
                overwrite=overwrite,
                columns={"text_column": text_column, "encoding": encoding},
            )
            result = recipe.train()
            finished = True
            return result
        finally:
            recipe.cleanup(wait_for_peers=finished)


__all__ = ["PretrainConfig", "PretrainRecipe", "SparseMLM", "parse_duration", "pretrain"]
