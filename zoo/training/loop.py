"""The fine-tuning loop: one process or many under torchrun (DDP), CPU or CUDA, resumable at any step."""
from __future__ import annotations

import json
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from zoo import io
from zoo.data import encode_labels, read_table, tokenize
from zoo.errors import ZooError
from zoo.inference import ModelPredictor, evaluate_rows, row_logits
from zoo.metrics import MAIN_METRIC, is_better
from zoo.tokenizer import pad_id

from . import device as D
from .batching import Collate, epoch_batches, micro_batch
from .config import PRETRAINED_LR, SCRATCH_LR, TrainConfig
from .optim import lr_factor, make_optimizer, set_lr, warmup_steps
from .prepare import ensure_tokenizer, fit_labels, lengths, load_start_model, max_length, task_of
from .board import Board
from .progress import Progress
from .state import STATE_NAME, model_from_state, read_state, restore, save_state

METRICS_NAME = "metrics.jsonl"


@dataclass
class TrainResult:
    output: Path
    epochs_run: int
    interrupted: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None


class StopRequest:
    """SIGINT/SIGTERM ask the loop to stop after the current step and save; a second Ctrl-C aborts."""

    def __init__(self, progress: Progress):
        self.requested, self.progress, self.previous = False, progress, {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.progress.note("zoo: stopping after this step and saving a checkpoint (Ctrl-C again to abort)")

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def finetune(model: Any, train: str | Path, *, output: str | Path, eval: str | Path | None = None,
             config: TrainConfig | None = None, text_column: str | None = None, label_column: str | None = None,
             pair_column: str | None = None, resume: bool = False, overwrite: bool = False,
             progress: bool = True, on_step: Callable[[int], None] | None = None) -> TrainResult:
    """Fine-tune ``model`` (a ZooModel, zoo model dir or HF BERT dir) on a CSV/TSV/JSONL file.

    ``output`` becomes a model directory (the best epoch by the task's metric when ``eval`` is given, else
    the last), plus metrics.jsonl and trainer_state.safetensors for ``resume``.
    """
    env = D.dist_env()
    output = Path(output)
    # one writer per output directory: a second run (or a second torchrun job) is refused, not interleaved
    with io.directory_lock(output) if env.is_main else _nullcontext():
        return _finetune(env, model, train, output, eval, config, resume, overwrite, progress, on_step,
                         dict(text_column=text_column, label_column=label_column, pair_column=pair_column))


def _finetune(env, model, train, output: Path, eval, config, resume, overwrite, progress, on_step, columns):
    if not resume:
        _check_output(output, overwrite)
    started_dist = env.distributed and not dist.is_initialized()
    config = config or TrainConfig()
    saved = read_state(output / STATE_NAME) if resume else None
    if saved is not None:
        try:
            config = TrainConfig.from_dict(saved[1]["config"])
        except TypeError as exc:
            raise ZooError(f"{output / STATE_NAME}: damaged training checkpoint ({exc})") from None
    device, precision = D.resolve(config.device, config.precision, env)
    if started_dist:
        if device.startswith("cuda"):
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        if device == "cpu":
            torch.set_num_threads(D.cpu_threads(env.local_world_size, config.num_threads))
        return _Run(env, device, precision, config, output, progress, on_step).run(model, train, eval, saved, columns)
    finally:
        if started_dist:
            dist.destroy_process_group()


def _check_output(output: Path, overwrite: bool) -> None:
    if not overwrite and (output / STATE_NAME).is_file():
        raise ZooError(f"{output} holds a training run; pass --resume to continue it or --overwrite to replace it")
    io.check_output(output, overwrite)
    if overwrite:  # a replaced run's state must not be resumed by mistake, nor its metrics mixed in
        for stale in (STATE_NAME, METRICS_NAME):
            (output / stale).unlink(missing_ok=True)


class _Run:
    def __init__(self, env: D.DistEnv, device: str, precision: str, config: TrainConfig, output: Path,
                 progress: bool, on_step):
        self.env, self.device, self.precision, self.config, self.output = env, device, precision, config, output
        self.progress = Progress(progress and env.is_main, log_every=config.log_every)
        self.board = Board(config.tensorboard) if config.tensorboard and env.is_main else None
        self.on_step = on_step

    # ---- setup ----------------------------------------------------------------------------------------
    def _model(self, model: Any, saved, train_table):
        if saved is not None:
            return model_from_state(self.output / STATE_NAME, *saved)
        built = load_start_model(model, self.config.seed)
        task = task_of(built)
        names = fit_labels(built, train_table, task, self.config.seed)
        ensure_tokenizer(built, train_table)
        built.spec.tokenizer["max_length"] = max_length(built, self.config.max_length)
        built.spec.tokenizer.setdefault("pad_id", pad_id(built.tokenizer))
        return built, names

    def _encode(self, table, task: str, names, num_labels: int):
        gold = encode_labels(table, task, names, num_labels)
        ids, token_gold = tokenize(self.model.tokenizer, table, self.model.spec.tokenizer["max_length"],
                                   gold if task == "token" else None)
        return ids, token_gold if task == "token" else gold

    def run(self, model: Any, train, eval, saved, columns) -> TrainResult:
        cfg, env = self.config, self.env
        train_table = read_table(train, **columns)
        eval_table = read_table(eval, **columns) if eval is not None else None
        self.model, names = self._model(model, saved, train_table)
        self.task = task = task_of(self.model)
        num = self.model.spec.sizes["num_labels"]
        self.train_ids, self.train_gold = self._encode(train_table, task, names, num)
        self.eval_data = self._encode(eval_table, task, names, num) if eval_table is not None else None
        self.names = names or []
        if saved is None:
            torch.manual_seed(cfg.seed + env.rank)
        self.model.to(self.device).train()
        self.progress.note(f"zoo: precision {self.precision} ({D.isa(self.device, self.precision)})")
        lr = cfg.lr or (PRETRAINED_LR if "source" in self.model.spec.extra else SCRATCH_LR)
        self.optimizer = make_optimizer(self.model, lr, cfg.weight_decay, self.device)
        self.base_lr = lr
        self.steps_per_epoch = math.ceil(len(self.train_ids) / cfg.batch_size)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.warmup = warmup_steps(self.total_steps, cfg.warmup_ratio)
        self.scaler = D.grad_scaler(self.precision, self.device)
        position = {"epoch": 0, "batch": 0, "step": 0, "best": None, "bad_epochs": 0, "history": []}
        if saved is not None:
            restore(saved[0], saved[1], self.model, self.optimizer)
            position = saved[1]["position"]
            self.progress.note(f"zoo: resuming at epoch {position['epoch'] + 1}, step {position['step']}")
        self.train_source = str(train)
        self.wrapped = self._wrap()
        return self._loop(position)

    def _wrap(self):
        if not self.env.distributed:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
        return DistributedDataParallel(self.model, device_ids=ids)

    # ---- the loop -------------------------------------------------------------------------------------
    def _loader(self, batches):
        cfg, env = self.config, self.env
        pieces = [micro_batch(b, m, cfg.grad_accum, env.rank, env.world_size)
                  for b in batches for m in range(cfg.grad_accum)]
        sizes = [max(len(b), cfg.grad_accum * env.world_size) for b in batches for _ in range(cfg.grad_accum)]
        collate = Collate(self.train_ids, self.train_gold, self.model.spec.tokenizer["pad_id"], self.task)
        loader = torch.utils.data.DataLoader(pieces, batch_size=None, collate_fn=collate,
                                             pin_memory=self.device.startswith("cuda"),
                                             generator=torch.Generator())
        return zip(loader, sizes, [len(p) for p in pieces])

    def _loop(self, pos: dict[str, Any]) -> TrainResult:
        cfg, env = self.config, self.env
        start = time.perf_counter()
        with StopRequest(self.progress) as stop:
            while pos["epoch"] < cfg.epochs:
                batches = epoch_batches(lengths(self.train_ids), cfg.batch_size, cfg.seed, pos["epoch"],
                                        cfg.group_by_length, cfg.mega_batches)[pos["batch"]:]
                self.progress.start_epoch(pos["epoch"] + 1, cfg.epochs, self.steps_per_epoch, pos["batch"])
                epoch_loss, epoch_rows, epoch_start = 0.0, 0, time.perf_counter()
                pending = self._loader(batches)
                for _ in batches:
                    loss, rows, tokens = self._step(pending, pos["step"] + 1)
                    pos["batch"] += 1
                    pos["step"] += 1
                    epoch_loss, epoch_rows = epoch_loss + loss * rows, epoch_rows + rows
                    self.progress.update(tokens * env.world_size, loss, self.optimizer.param_groups[0]["lr"])
                    if self.board is not None:
                        self.board.step(pos["step"], loss, self.optimizer.param_groups[0]["lr"],
                                        self.progress.tokens_per_s())
                    if self.on_step is not None:
                        self.on_step(pos["step"])
                    if self._agree(stop.requested) and pos["batch"] < self.steps_per_epoch:
                        self.progress.end_epoch()
                        self._save_state(pos)
                        self.progress.note(f"zoo: interrupted at step {pos['step']}; continue with --resume")
                        return TrainResult(self.output, pos["epoch"], True, pos["history"], pos["best"])
                self.progress.end_epoch()
                record = self._end_epoch(pos, epoch_loss / max(1, epoch_rows), epoch_rows,
                                         time.perf_counter() - epoch_start, self.progress.tokens_per_s())
                if self._agree(stop.requested) and pos["epoch"] < cfg.epochs:
                    self.progress.note(f"zoo: interrupted after epoch {pos['epoch']}; continue with --resume")
                    return TrainResult(self.output, pos["epoch"], True, pos["history"], pos["best"])
                if record.get("stopped_early"):
                    break
        self.progress.note(f"zoo: trained {pos['epoch']} epoch(s) in {time.perf_counter() - start:.1f}s; "
                           f"model in {self.output}")
        return TrainResult(self.output, pos["epoch"], False, pos["history"], pos["best"])

    def _step(self, pending, step: int) -> tuple[float, int, int]:
        """One optimizer step over grad_accum micro-batches; returns (mean loss, rows, tokens)."""
        cfg = self.config
        total_loss, total_rows, total_tokens = 0.0, 0, 0
        for micro in range(cfg.grad_accum):
            batch, global_rows, rows = next(pending)
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            last = micro == cfg.grad_accum - 1
            sync = self.wrapped.no_sync() if self.env.distributed and not last else _nullcontext()
            with sync:
                with D.autocast(self.device, self.precision):
                    logits = self.wrapped(batch["input_ids"], batch["attention_mask"])
                loss = self.model.loss(logits, batch["labels"], batch["attention_mask"])
                # every row weighs the same in the global batch; DDP averages over processes
                self.scaler.scale(loss * (rows * self.env.world_size / global_rows)).backward()
            total_loss += loss.item() * rows
            total_rows += rows
            total_tokens += int(batch["attention_mask"].sum())
        if self._agree(not math.isfinite(total_loss)):  # before the step: bad weights are never applied
            self._stop_on_bad_loss(total_loss / max(1, total_rows), step)
        set_lr(self.optimizer, self.base_lr * lr_factor(step, self.total_steps, self.warmup))
        if cfg.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return total_loss / max(1, total_rows), total_rows, total_tokens

    def _stop_on_bad_loss(self, loss: float, step: int) -> None:
        kept = (f"the last good checkpoint in {self.output} is kept" if (self.output / STATE_NAME).is_file()
                else "nothing was saved")
        fp32 = "" if self.precision == "fp32" else " or --precision fp32"
        raise ZooError(f"the loss is {loss} at step {step}; training stopped and {kept}. "
                       f"Try a lower --lr (it was {self.base_lr:g}){fp32}")

    def _agree(self, flag: bool) -> bool:
        """Under torchrun a stop anywhere stops every process at the same step."""
        if not self.env.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    # ---- epochs, evaluation, files -----------------------------------------------------------------------
    def evaluate(self) -> dict[str, Any] | None:
        if self.eval_data is None:
            return None
        ids, gold = self.eval_data
        predictor = ModelPredictor(self.model, self.device, self.precision)
        return evaluate_rows(self.task, row_logits(predictor, ids, self.config.eval_batch_size), gold, self.names)

    def _end_epoch(self, pos, train_loss: float, rows: int, seconds: float, tokens_s: float) -> dict[str, Any]:
        metrics = self.evaluate()
        pos["epoch"] += 1
        pos["batch"] = 0
        record: dict[str, Any] = {"epoch": pos["epoch"], "step": pos["step"], "train_loss": round(train_loss, 6),
                                  "lr": self.optimizer.param_groups[0]["lr"],
                                  "samples_per_s": round(rows * self.env.world_size / max(seconds, 1e-9), 2),
                                  "tokens_per_s": round(tokens_s, 1), "epoch_seconds": round(seconds, 2)}
        improved = True
        if metrics is not None:
            key = MAIN_METRIC[self.task]
            record["eval"] = metrics
            improved = is_better(self.task, metrics[key], pos["best"] and pos["best"]["value"])
            if improved:
                pos["best"] = {"epoch": pos["epoch"], "metric": key, "value": metrics[key]}
                pos["bad_epochs"] = 0
            else:
                pos["bad_epochs"] += 1
            record["best"] = improved
            summary = " ".join(f"{k} {metrics[k]:.4f}" for k in ("accuracy", "macro_f1", "micro_f1", "mse", "r2")
                               if k in metrics)
            self.progress.note(f"epoch {pos['epoch']}: train loss {train_loss:.4f}; eval {summary}"
                               + (" (best)" if improved else ""))
        else:
            self.progress.note(f"epoch {pos['epoch']}: train loss {train_loss:.4f}")
        if self.config.patience and pos["bad_epochs"] >= self.config.patience and pos["epoch"] < self.config.epochs:
            record["stopped_early"] = True
            self.progress.note(f"zoo: no improvement for {pos['bad_epochs']} epoch(s); stopping early")
        pos["history"].append(record)
        if self.board is not None:
            self.board.epoch(record)
        if self.env.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            if improved:
                self._save_model(pos)
            io.write_text(self.output / METRICS_NAME, "".join(json.dumps(r) + "\n" for r in pos["history"]))
            self._save_state(pos)
        return record

    def _save_model(self, pos) -> None:
        spec = self.model.spec
        spec.extra["training"] = {"train": self.train_source, "task": self.task, "epochs": pos["epoch"],
                                  "steps": pos["step"], "best": pos["best"], "config": self.config.to_dict(),
                                  "world_size": self.env.world_size, "device": self.device,
                                  "precision": self.precision, "isa": D.isa(self.device, self.precision)}
        self.model.save(self.output)

    def _save_state(self, pos) -> None:
        if not self.env.is_main:
            return
        info = {"position": pos, "config": self.config.to_dict(), "spec": self.model.spec.to_dict(),
                "tokenizer": self.model.tokenizer.to_str(), "labels": self.names or None}
        save_state(self.output / STATE_NAME, self.model, self.optimizer, info)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
