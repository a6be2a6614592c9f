"""Fine-tuning as a recipe (torchtune's shape): ``setup`` reads the data and builds the model, optimizer and
state; ``train`` runs epochs of optimizer steps; ``evaluate`` scores the eval data with the model's task;
``save_checkpoint`` writes the resumable state; ``cleanup`` closes the loggers. One process or many under
torchrun (DDP), CPU or CUDA, resumable at any step to the same weights as an uninterrupted run."""

from __future__ import annotations

import gc
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from zoo import device as D
from zoo import io
from zoo.constants import IGNORE_INDEX, METRICS_NAME, STATE_NAME
from zoo.errors import ZooError
from zoo.inference import ModelPredictor, row_logits
from zoo.tokenizer import ids_of, pad_id
from zoo.windows import LongText, note_cut
from zoo.windows import encode as encode_windows

from .batching import Collate, epoch_batches, micro_batch, without_duplicates
from .board import Board
from .config import ADAPTER_LR, PRETRAINED_LR, SCRATCH_LR, TrainConfig
from .loggers import Curves, Logger, MetricsFile, StepCallback
from .optim import lr_factor, make_optimizer, set_lr, warmup_steps
from .prepare import (
    DEFAULT_HEAD,
    ensure_tokenizer,
    fit_labels,
    lengths,
    load_start_model,
    max_length,
    replace_pretraining_head,
)
from .progress import Progress
from .state import TrainState, model_from_state, read_state, restore, save_state


@dataclass
class TrainResult:
    output: Path
    epochs_run: int
    interrupted: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    signal: int | None = None  # the signal that interrupted the run (SIGINT or SIGTERM)


class StopRequest:
    """SIGINT/SIGTERM ask the recipe to stop after the current step and save; a second one aborts."""

    def __init__(self, progress: Progress):
        self.requested, self.progress, self.signal = False, progress, None
        self.previous: dict[int, Any] = {}  # signal number -> the handler it had before

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signal = True, signum
        self.progress.note(
            "zoo: stopping after this step and saving a checkpoint (Ctrl-C again to abort)"
            if signum == signal.SIGINT
            else "zoo: SIGTERM received; stopping after this step and saving a checkpoint"
        )

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def finetune(
    model: Any,
    train: str | Path,
    *,
    output: str | Path,
    eval: str | Path | None = None,
    config: TrainConfig | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    pair_column: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    encoding: str | None = None,
) -> TrainResult:
    """Fine-tune ``model`` (a ZooModel, a zoo model directory or a Hugging Face directory) on a CSV/TSV/JSONL
    file. ``output`` becomes a model directory (the best epoch by the task's main metric when ``eval`` is
    given, else the last), with metrics.jsonl, curves.png and trainer_state.safetensors for ``resume``."""
    env = D.dist_env()
    output = Path(output)
    # one writer per output directory: a second run (or a second torchrun job) is refused, not interleaved
    with io.directory_lock(output) if env.is_main else _NoLock():
        recipe = FineTuneRecipe(env, output, config, progress=progress, on_step=on_step)
        finished = False
        try:
            recipe.setup(
                model,
                train,
                eval,
                resume=resume,
                overwrite=overwrite,
                columns={
                    "text_column": text_column,
                    "label_column": label_column,
                    "pair_column": pair_column,
                    "encoding": encoding,
                },
            )
            result = recipe.train()
            finished = True
            return result
        finally:
            recipe.cleanup(wait_for_peers=finished)


class FineTuneRecipe:
    def __init__(
        self,
        env: D.DistEnv,
        output: Path,
        config: TrainConfig | None = None,
        *,
        progress: bool = True,
        on_step: Callable[[int], None] | None = None,
    ):
        self.env, self.output, self.config = env, output, config or TrainConfig()
        self.show_progress, self.on_step = progress, on_step
        self.loggers: list[Logger] = []
        self.started_dist = False

    # ---- setup ------------------------------------------------------------------------------------------
    def setup(
        self, model: Any, train, eval, *, resume: bool, overwrite: bool, columns: dict[str, Any]
    ) -> None:
        """Read the data, build (or restore) the model, optimizer and state, and start the loggers."""
        if not resume:
            self._check_output(overwrite)
        saved = read_state(self.output / STATE_NAME) if resume else None
        if saved is not None:
            try:
                self.config = TrainConfig.from_dict(saved[1]["config"])
            except TypeError as exc:
                raise ZooError(f"{self.output / STATE_NAME}: damaged training checkpoint ({exc})") from None
        self._place()
        self._data(model, train, eval, saved, columns)
        self._optimizer(saved)
        self.wrapped = self._wrap()
        self.loggers = self._loggers()

    def _place(self) -> None:
        """Device, precision, processes and threads."""
        cfg, env = self.config, self.env
        self.device, self.precision = D.resolve(cfg.device, cfg.precision, env)
        self._start_processes()
        if self.device == "cpu":
            torch.set_num_threads(D.cpu_threads(env.local_world_size, cfg.num_threads))
        self.progress = Progress(self.show_progress and env.is_main, log_every=cfg.log_every)

    def _data(self, model: Any, train, eval, saved, columns: dict[str, Any]) -> None:
        """The model (the saved run's, or the starting one fitted to the data) and the encoded data."""
        if saved is not None:
            self.model, names = model_from_state(self.output / STATE_NAME, *saved)
        else:
            self.model = load_start_model(model, self.config.seed)
            if getattr(self.model.task, "pretraining", False):  # a pre-trained (mlm) model gets a task head
                replace_pretraining_head(self.model, self.config.head or DEFAULT_HEAD, self.config.seed)
        self.task = self.model.task
        self.task.check_training(self.config)
        train_table = self.task.read(train, **columns)
        eval_table = self.task.read(eval, **columns) if eval is not None else None
        self.train_keys = self.task.batch_keys(train_table)
        if saved is None:
            names = self._fit(train_table)
        self.names = names or []
        num = self.model.spec.sizes["num_labels"]
        self.train_ids, self.train_targets, self.train_weights = self._encode(train_table, names, num)
        self.eval_data = self._encode_eval(eval_table, names, num) if eval_table is not None else None
        self.train_source = str(train)
        self.eval_source = str(eval) if eval is not None else None

    def _optimizer(self, saved) -> None:
        """AdamW, the schedule and the state: fresh, or exactly as saved (weights, moments, RNG, position)."""
        cfg = self.config
        if saved is None:
            torch.manual_seed(cfg.seed + self.env.rank)
            if cfg.adapter and self.model.adapter is None:  # wrapped before the optimizer sees its parameters
                self.model.add_adapter(cfg.adapter, **(cfg.adapter_options or {}))
        self.model.to(self.device).train()
        self.progress.note(f"zoo: precision {self.precision} ({D.isa(self.device, self.precision)})")
        self.base_lr = cfg.lr or (
            ADAPTER_LR
            if self.model.adapter is not None
            else PRETRAINED_LR
            if "source" in self.model.spec.extra
            else SCRATCH_LR
        )
        self.optimizer = make_optimizer(self.model, self.base_lr, cfg.weight_decay, self.device)
        self._schedule()
        self.scaler = D.grad_scaler(self.precision, self.device)
        self.state = TrainState()
        if saved is not None:
            restore(saved[0], saved[1], self.model, self.optimizer)
            self.state = TrainState.from_dict(saved[1]["position"])
            self.progress.note(f"zoo: resuming at epoch {self.state.epoch + 1}, step {self.state.step}")

    def _schedule(self) -> None:
        """Steps per epoch, all steps and the warm-up (the learning-rate schedule's shape)."""
        cfg = self.config
        self.steps_per_epoch = math.ceil(len(self.train_ids) / cfg.batch_size)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.warmup = warmup_steps(self.total_steps, cfg.warmup_ratio)

    def lr_factor(self, step: int) -> float:
        """The multiplier of the peak learning rate at optimizer step ``step``."""
        return lr_factor(step, self.total_steps, self.warmup)

    def _check_output(self, overwrite: bool) -> None:
        output = self.output
        if not overwrite and (output / STATE_NAME).is_file():
            raise ZooError(
                f"{output} holds a training run; pass --resume to continue it or --overwrite to replace it"
            )
        io.check_output(output, overwrite)
        if overwrite:  # a replaced run's state must not be resumed by mistake, nor its metrics mixed in
            for stale in (STATE_NAME, METRICS_NAME):
                (output / stale).unlink(missing_ok=True)

    def _start_processes(self) -> None:
        if self.env.distributed and not dist.is_initialized():
            if self.device.startswith("cuda"):
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.startswith("cuda") else "gloo")
            self.started_dist = True

    def _fit(self, train_table) -> list[str] | None:
        """A fresh run's model takes the data's label set, a tokenizer when it has none, and the length."""
        model = self.model
        names = fit_labels(model, train_table, self.config.seed)
        ensure_tokenizer(model, train_table)
        model.spec.tokenizer["max_length"] = max_length(model, self.config.max_length)
        model.spec.tokenizer.setdefault("pad_id", pad_id(model.tokenizer))
        if self.config.long_text is not None or self.config.stride is not None:  # chosen: the model keeps it
            model.spec.tokenizer["long_text"] = self.long_text.record()
        return names

    @property
    def long_text(self) -> LongText:
        """--long-text/--stride over what the starting model records."""
        recorded = LongText.from_record(self.model.spec.tokenizer.get("long_text"))
        return recorded.override(self.config.long_text, self.config.stride)

    def _windows(self, table, names, num_labels: int):
        encodings, plan = encode_windows(
            self.task, self.model.tokenizer, table, self.model.spec.tokenizer["max_length"], self.long_text
        )
        return encodings, plan, self.task.targets(table, names, num_labels, encodings)

    def _encode(self, table, names, num_labels: int):
        """Training rows: (token ids, targets, loss weights or None). With --long-text window each window of
        a long text is a row with the text's target, weighted 1/windows unless --window-weight window."""
        encodings, plan, targets = self._windows(table, names, num_labels)
        if plan is None:
            note_cut(
                self, self.task.sequences(encodings), self.model.spec.tokenizer["max_length"], self.long_text
            )
        if plan is None or not plan.split:
            return ids_of(encodings), targets, None
        if encodings and isinstance(encodings[0], (list, tuple)):
            raise ZooError(
                f"--long-text window trains tasks of one text per row; a '{self.task.name}' row holds "
                f"several texts and some are longer than --max-length; use --long-text truncate"
            )
        weights = plan.weights() if self.config.window_weight == "text" else None
        return plan.ids, plan.spread(targets, self.task.per_token), weights

    def _encode_eval(self, table, names, num_labels: int):
        """Eval data: (ids to run, per-sequence targets, the windows plan or None); metrics are per text."""
        encodings, plan, targets = self._windows(table, names, num_labels)
        task = self.task
        return (plan.ids if plan else task.sequences(ids_of(encodings))), task.sequences(targets), plan

    def _wrap(self):
        if not self.env.distributed:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
        return DistributedDataParallel(self.model, device_ids=ids)

    def _loggers(self) -> list[Logger]:
        loggers: list[Logger] = [self.progress]
        if self.on_step is not None:
            loggers.append(StepCallback(self.on_step))
        if not self.env.is_main:
            return loggers
        loggers.append(MetricsFile(self.output))
        if self.config.tensorboard:
            loggers.append(Board(self.config.tensorboard))
        if self.config.curves:
            loggers.append(
                Curves(self.output, self.task.main_metric, self.task.lower_is_better, self.progress.note)
            )
        return loggers

    # ---- training ---------------------------------------------------------------------------------------
    def train(self) -> TrainResult:
        cfg, env, state = self.config, self.env, self.state
        start = time.perf_counter()
        with StopRequest(self.progress) as stop:
            self.stop = stop
            while state.epoch < cfg.epochs:
                batches = epoch_batches(
                    lengths(self.train_ids),
                    cfg.batch_size,
                    cfg.seed,
                    state.epoch,
                    cfg.group_by_length,
                    cfg.mega_batches,
                )
                if self.train_keys is not None:  # the task keeps rows that share a text apart
                    batches = without_duplicates(batches, self.train_keys, cfg.batch_size)
                batches = batches[state.batch :]
                self.progress.start_epoch(state.epoch + 1, cfg.epochs, self.steps_per_epoch, state.batch)
                epoch_loss, epoch_rows, epoch_start = 0.0, 0, time.perf_counter()
                pending = self._loader(batches)
                for _ in batches:
                    loss, rows, tokens = self.train_step(pending, state.step + 1)
                    state.batch += 1
                    state.step += 1
                    state.losses.append([state.step, loss])
                    epoch_loss, epoch_rows = epoch_loss + loss * rows, epoch_rows + rows
                    lr = self.optimizer.param_groups[0]["lr"]
                    for logger in self.loggers:
                        logger.on_step(state, loss, lr, tokens * env.world_size, self.progress.tokens_per_s())
                    if self._agree(stop.requested) and state.batch < self.steps_per_epoch:
                        self.progress.end_epoch()
                        self.save_checkpoint()
                        self.progress.note(f"zoo: interrupted at step {state.step}; continue with --resume")
                        return self._result(interrupted=True)
                self.progress.end_epoch()
                record = self.end_epoch(
                    epoch_loss / max(1, epoch_rows),
                    epoch_rows,
                    time.perf_counter() - epoch_start,
                    self.progress.tokens_per_s(),
                )
                if self._agree(stop.requested) and state.epoch < cfg.epochs:
                    self.progress.note(f"zoo: interrupted after epoch {state.epoch}; continue with --resume")
                    return self._result(interrupted=True)
                if record.get("stopped_early"):
                    break
        self.progress.note(
            f"zoo: trained {state.epoch} epoch(s) in {time.perf_counter() - start:.1f}s; "
            f"model in {self.output}"
        )
        return self._result(interrupted=False)

    def _result(self, interrupted: bool) -> TrainResult:
        return TrainResult(
            self.output,
            self.state.epoch,
            interrupted,
            self.state.history,
            self.state.best,
            signal=self.stop.signal if interrupted else None,
        )

    def _loader(self, batches):
        cfg, env = self.config, self.env
        pieces = [
            micro_batch(b, m, cfg.grad_accum, env.rank, env.world_size)
            for b in batches
            for m in range(cfg.grad_accum)
        ]
        sizes = [max(len(b), cfg.grad_accum * env.world_size) for b in batches for _ in range(cfg.grad_accum)]
        collate = Collate(
            self.train_ids,
            self.train_targets,
            self.model.spec.tokenizer["pad_id"],
            self.task,
            self.train_weights,
        )
        loader: torch.utils.data.DataLoader[Any] = torch.utils.data.DataLoader(
            pieces,  # type: ignore[arg-type]  # a list is a map-style dataset (indexable and sized)
            batch_size=None,
            collate_fn=collate,  # type: ignore[arg-type]  # batch_size=None: it gets one item, not a list
            pin_memory=self.device.startswith("cuda"),
            generator=torch.Generator(),
        )
        return zip(loader, sizes, [len(p) for p in pieces])

    def train_step(self, pending, step: int) -> tuple[float, int, int]:
        """One optimizer step over grad_accum micro-batches; returns (mean loss, rows, tokens)."""
        cfg = self.config
        total_loss, total_rows, total_tokens = 0.0, 0, 0
        for micro in range(cfg.grad_accum):
            batch, global_rows, rows = next(pending)
            total_tokens += int(batch["attention_mask"].sum())  # counted on the host copy: no device sync
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            last = micro == cfg.grad_accum - 1
            sync = self.wrapped.no_sync() if self.env.distributed and not last else _NoLock()
            with sync:
                loss = self.forward_loss(batch)
                # every row weighs the same in the global batch; DDP averages over processes
                self.scaler.scale(loss * (rows * self.env.world_size / global_rows)).backward()
            total_loss += loss.item() * rows
            total_rows += rows
        if self._agree(not math.isfinite(total_loss)):  # before the step: bad weights are never applied
            self._stop_on_bad_loss(total_loss / max(1, total_rows), step)
        set_lr(self.optimizer, self.base_lr * self.lr_factor(step))
        if cfg.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return total_loss / max(1, total_rows), total_rows, total_tokens

    def forward_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """The loss of one micro-batch, through the (DDP-wrapped) model."""
        with D.autocast(self.device, self.precision):
            groups = self.task.row_groups(batch.get("labels"))  # e.g. anchors, positives: each padded alone
            inputs = (batch["input_ids"], batch["attention_mask"]) + ((groups,) if groups else ())
            logits = self.wrapped(*inputs)
        return self._loss(logits, batch)

    def _loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The head's loss (over every process's batch for a task whose loss compares rows, in-batch
        negatives); with window weights, the mean over rows of each row's loss times its weight."""
        outputs, labels, mask = self.task.gather(logits, batch["labels"], batch["attention_mask"])
        weights = batch.get("weights")
        if weights is None or bool((weights == 1).all()):
            return self.model.loss(outputs, labels, mask)
        rows: list[int] = list(range(len(outputs)))
        if self.task.per_token:  # a window whose tokens carry no label adds nothing (and no NaN)
            rows = [i for i in rows if bool((labels[i] != IGNORE_INDEX).any())]
        if not rows:
            return outputs.sum() * 0.0
        losses = torch.stack(
            [
                self.model.loss(
                    outputs[i : i + 1], labels[i : i + 1], None if mask is None else mask[i : i + 1]
                )
                for i in rows
            ]
        )
        return (losses * weights[list(rows)].to(losses.dtype)).sum() / len(outputs)

    def _stop_on_bad_loss(self, loss: float, step: int) -> None:
        kept = (
            f"the last good checkpoint in {self.output} is kept"
            if (self.output / STATE_NAME).is_file()
            else "nothing was saved"
        )
        fp32 = "" if self.precision == "fp32" else " or --precision fp32"
        raise ZooError(
            f"the loss is {loss} at step {step}; training stopped and {kept}. "
            f"Try a lower --lr (it was {self.base_lr:g}){fp32}"
        )

    def _agree(self, flag: bool) -> bool:
        """Under torchrun a stop anywhere stops every process at the same step."""
        if not self.env.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    # ---- evaluation, epochs, checkpoints ----------------------------------------------------------------
    def evaluate(self) -> dict[str, Any] | None:
        """The task's metrics on the eval data, or None without eval data."""
        if self.eval_data is None:
            return None
        ids, targets, plan = self.eval_data  # every row's sequences (or their windows), in the task's order
        predictor = ModelPredictor(self.model, self.device, self.precision)
        outputs = row_logits(predictor, ids, self.config.eval_batch_size)
        if plan is not None:  # one output per text, combined from its windows
            outputs = plan.combine(self.task, outputs, self.long_text.how)
        return self.task.evaluate(outputs, targets, self.names or None)

    def end_epoch(self, train_loss: float, rows: int, seconds: float, tokens_s: float) -> dict[str, Any]:
        """Evaluate, keep the best epoch, count patience, tell the loggers, save."""
        state, metrics = self.state, self.evaluate()
        state.epoch += 1
        state.batch = 0
        record: dict[str, Any] = {
            "epoch": state.epoch,
            "step": state.step,
            "train_loss": round(train_loss, 6),
            "lr": self.optimizer.param_groups[0]["lr"],
            "samples_per_s": round(rows * self.env.world_size / max(seconds, 1e-9), 2),
            "tokens_per_s": round(tokens_s, 1),
            "epoch_seconds": round(seconds, 2),
        }
        improved = True
        if metrics is not None:
            key = self.task.main_metric
            record["eval"] = metrics
            improved = self.task.better(metrics[key], state.best and state.best["value"])
            if improved:
                state.best = {"epoch": state.epoch, "metric": key, "value": metrics[key]}
                state.bad_epochs = 0
            else:
                state.bad_epochs += 1
            record["best"] = improved
            self.progress.note(
                f"epoch {state.epoch}: train loss {train_loss:.4f}; eval {self.task.summary(metrics)}"
                + (" (best)" if improved else "")
            )
        else:
            self.progress.note(f"epoch {state.epoch}: train loss {train_loss:.4f}")
        if (
            self.config.patience
            and state.bad_epochs >= self.config.patience
            and state.epoch < self.config.epochs
        ):
            record["stopped_early"] = True
            self.progress.note(f"zoo: no improvement for {state.bad_epochs} epoch(s); stopping early")
        state.history.append(record)
        if improved and self.env.is_main:
            self.save_model()
        for logger in self.loggers:
            logger.on_epoch(state, record)
        self.save_checkpoint()
        return record

    def save_model(self) -> None:
        """The model directory: this epoch's weights with the record of how they were trained."""
        self.model.spec.extra["training"] = {
            "train": self.train_source,
            "eval": self.eval_source,
            "task": self.task.name,
            "epochs": self.state.epoch,
            "steps": self.state.step,
            "best": self.state.best,
            "config": self.config.to_dict(),
            "world_size": self.env.world_size,
            "device": self.device,
            "precision": self.precision,
            "isa": D.isa(self.device, self.precision),
        }
        self.model.save(self.output)

    def save_checkpoint(self) -> None:
        """trainer_state.safetensors: everything ``--resume`` needs (main process only)."""
        if not self.env.is_main:
            return
        save_state(self.output / STATE_NAME, self.model, self.optimizer, self.checkpoint_info())

    def checkpoint_info(self) -> dict[str, Any]:
        """The JSON part of the checkpoint: position, config, spec, tokenizer, labels (and the adapter)."""
        info = {
            "position": self.state.to_dict(),
            "config": self.config.to_dict(),
            "spec": self.model.spec.to_dict(),
            "tokenizer": self.model.tokenizer.to_str(),
            "labels": self.names or None,
        }
        if self.model.adapter is not None:  # the checkpoint holds the adapter and head only, over this base
            info["adapter"] = self.model.adapter.to_dict()
        return info

    def cleanup(self, wait_for_peers: bool = False) -> None:
        """Close every logger (curves.png is drawn here) and leave the process group this recipe joined.
        ``wait_for_peers``: after a run every process finished, wait for the others (the main one writes the
        last files) so that no process tears the group down under a peer that still uses it."""
        state = getattr(self, "state", TrainState())
        for logger in self.loggers:
            logger.close(state)
        self.loggers = []
        if self.started_dist:
            # DDP's reducer holds the process group and gloo's pending work: free it first, while the interpreter
            # is whole, so the group's threads are joined here and not in a destructor run at exit (a peer
            # that exited that way aborted with "terminate called without an active exception")
            self.wrapped = self.model
            gc.collect()
            if wait_for_peers:
                dist.barrier()
            dist.destroy_process_group()
            self.started_dist = False


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
