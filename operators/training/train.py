"""Driving transformers' `Trainer` for a training task, in this process or as one Ray Train
worker of several (`ray_worker_loop`, run by `ray.train.torch.TorchTrainer`; transformers'
integration: `prepare_trainer` and `RayTrainReportCallback`).

Every worker runs `train_worker` on the same `TrainPlan`: it memory-maps the example files the
driver wrote (`operators/training/train_data.py`), loads the base checkpoint with the task's head, and
trains with AdamW, linear warmup and decay, evaluating and checkpointing once per epoch (or
every `eval_steps`), keeping the best checkpoint by the task's validation metric. Workers shard
the token-budget batches between them (data parallel; gradients all-reduced by DDP).

Checkpoints: in this process, `<work>/checkpoints/checkpoint-N` (transformers' layout; a
checkpoint counts once its `trainer_state.json`, written last, exists); under Ray Train, Ray's
own checkpoints in `<work>/ray/` (local or object storage), reported by
`RayTrainReportCallback`. A rerun resumes from the newest: weights, optimizer, scheduler, RNG
states and the position in the epoch.

At the end worker 0 saves the best model (safetensors, tokenizer, config with the label maps)
into the output folder and writes `<work>/result.json`: the log history, the final validation
metrics, steps and epochs, whether early stopping ended training."""
from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback

from corpusmill.operators.training.train_data import (
    TRAIN, VALIDATION, VALIDATION_ROWS, BatchCollator, ExampleBatches, ExampleRows, data_paths,
    open_arrow, storage,
)
from corpusmill.pipelines.training.base import EvalData, TrainingTask

RESULT = "result.json"
CHECKPOINTS = "checkpoints"
RAY_RUN = "ray"
TRAINER_STATE = "trainer_state.json"


@dataclass(frozen=True)
class TrainPlan:
    """Everything a worker needs, resolved on the driver. Plain data: picklable."""

    spec: Any                   # the TrainSpec (jobs/training/train_spec.py)
    task: TrainingTask          # configured for this data (e.g. multi-label)
    model_ref: str              # what from_pretrained takes
    labels: list[str] | None    # label list in id order, for tasks with labels
    max_length: int             # tokens per example
    work: str                   # <output>/.corpusmill/training: data, checkpoints, result
    workers: int
    use_gpu: bool
    torch_threads: int
    has_validation: bool


def train_worker(plan: TrainPlan, ray_train: bool = False) -> None:
    """Train on this worker; worker 0 saves the model into the output folder."""
    import torch
    from transformers import EarlyStoppingCallback, Trainer, set_seed
    from transformers.trainer_callback import PrinterCallback
    from transformers.utils import logging as transformers_logging

    if not plan.use_gpu:
        torch.set_num_threads(plan.torch_threads)
    transformers_logging.set_verbosity_error()  # our progress lines, not its bars and reports
    transformers_logging.disable_progress_bar()
    spec, task = plan.spec, plan.task
    set_seed(spec.training.seed)
    tokenizer, model = load_base(plan)
    fs, work = storage(plan.work)  # work: the folder's path inside its filesystem
    data = WorkerData(plan, fs, work, model, tokenizer)
    with tempfile.TemporaryDirectory(prefix="corpusmill-train-") as scratch:
        local_checkpoints = (os.path.join(plan.work, CHECKPOINTS) if not ray_train
                             else os.path.join(scratch, CHECKPOINTS))
        args = training_arguments(plan, local_checkpoints)
        trainer = Trainer(model=model, args=args, train_dataset=data.train,
                          eval_dataset=data.validation, data_collator=data.collator,
                          processing_class=tokenizer, compute_metrics=data.compute_metrics)
        trainer.remove_callback(PrinterCallback)
        if args.should_log:
            trainer.add_callback(ProgressPrinter(task, spec.training.epochs))
        if spec.training.early_stopping_patience:
            trainer.add_callback(EarlyStoppingCallback(spec.training.early_stopping_patience))
        if ray_train:
            from ray.train.huggingface.transformers import (
                RayTrainReportCallback, prepare_trainer,
            )
            trainer.add_callback(RayTrainReportCallback())
            trainer = prepare_trainer(trainer)
        started = time.monotonic()
        with resume_point(local_checkpoints, ray_train) as checkpoint:
            if checkpoint and args.should_log:
                print(f"resuming from {checkpoint_name(checkpoint, ray_train)}", flush=True)
            output = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.remove_callback(ProgressPrinter)
        final = trainer.evaluate() if data.validation is not None else {}
        if trainer.is_world_process_zero():
            model = getattr(trainer.model, "module", trainer.model)  # DDP wrapper
            generated = ({} if data.validation_rows is None else task.generation_metrics(
                model, tokenizer, data.validation_rows, spec.task_options, plan.max_length))
            data.details.update({k: v for k, v in generated.items() if not _is_number(v)})
            save_model(plan, model, tokenizer, scratch)
            write_result(trainer, output, {**final, **generated}, data.details,
                         time.monotonic() - started, fs, f"{work}/{RESULT}", task)


class WorkerData:
    """A worker's view of the example files: the training batches, the validation examples
    and rows, the collator, and the validation metric the trainer calls."""

    def __init__(self, plan: TrainPlan, fs, work: str, model, tokenizer):
        spec, task = plan.spec, plan.task
        paths = data_paths(work)
        features = model_inputs(model)
        self.train = ExampleBatches(open_arrow(fs, paths[TRAIN]), features,
                                    spec.training.max_tokens, spec.training.seed)
        examples = open_arrow(fs, paths[VALIDATION]) if plan.has_validation else None
        self.validation = ExampleRows(examples, features) if examples is not None else None
        self.validation_rows = (open_arrow(fs, paths[VALIDATION_ROWS])
                                if self.validation is not None else None)
        self.collator = BatchCollator(*task.collators(tokenizer, model, spec.task_options,
                                                      spec.training.seed))
        self.details: dict = {}  # the last evaluation's per-class / per-type scores
        self.compute_metrics = None
        if self.validation is not None and task.has_metrics():
            eval_data = EvalData(examples=examples, rows=self.validation_rows,
                                 labels=plan.labels, tokenizer=tokenizer,
                                 extra={"max_length": plan.max_length})

            def compute_metrics(prediction):
                scores = task.metrics(prediction.predictions, prediction.label_ids, eval_data,
                                      spec.task_options)
                self.details.clear()
                self.details.update({k: v for k, v in scores.items() if not _is_number(v)})
                return {k: v for k, v in scores.items() if _is_number(v)}

            self.compute_metrics = compute_metrics


def load_base(plan: TrainPlan):
    """The base checkpoint's tokenizer and model, with the task's head (new heads are
    initialised from the seed; a head of another size is replaced)."""
    from transformers import AutoConfig, AutoTokenizer

    spec = plan.spec
    common = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
    tokenizer = AutoTokenizer.from_pretrained(plan.model_ref, **common)
    config = AutoConfig.from_pretrained(plan.model_ref, **common)
    kwargs = plan.task.model_kwargs(plan.labels, spec.task_options, config)
    model = plan.task.model_class().from_pretrained(
        plan.model_ref, use_safetensors=None if spec.allow_pickle else True,
        ignore_mismatched_sizes=bool(kwargs), **common, **kwargs)
    return tokenizer, model


def model_inputs(model) -> list[str]:
    """Example features the model's forward takes (a DistilBERT takes no token_type_ids), and
    those the collators read (masked-LM masking skips special tokens)."""
    return list(inspect.signature(model.forward).parameters) + ["special_tokens_mask"]


def training_arguments(plan: TrainPlan, output_dir: str):
    from transformers import TrainingArguments

    training = plan.spec.training
    by_steps = training.eval_steps is not None
    strategy = "steps" if by_steps else "epoch"
    evaluate = plan.has_validation
    return TrainingArguments(
        output_dir=output_dir, num_train_epochs=training.epochs,
        learning_rate=training.learning_rate, weight_decay=training.weight_decay,
        warmup_steps=training.warmup_ratio, lr_scheduler_type="linear", seed=training.seed,
        per_device_train_batch_size=1,  # an item is a whole token-budget batch
        per_device_eval_batch_size=max(1, training.max_tokens // plan.max_length),
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        eval_strategy=strategy if evaluate else "no", save_strategy=strategy,
        logging_strategy=strategy, eval_steps=training.eval_steps,
        save_steps=training.eval_steps, logging_steps=training.eval_steps,
        load_best_model_at_end=evaluate, metric_for_best_model=plan.task.metric if evaluate
        else None, greater_is_better=plan.task.greater_is_better if evaluate else None,
        # without a metric of its own a task needs the loss alone: collecting the logits of
        # a vocabulary-sized head over the validation set would take gigabytes
        prediction_loss_only=not plan.task.has_metrics(),
        save_total_limit=2, report_to=[], disable_tqdm=True, use_cpu=not plan.use_gpu,
        remove_unused_columns=False, dataloader_num_workers=0, log_level="error",
        ddp_find_unused_parameters=False, save_on_each_node=False)


@contextlib.contextmanager
def resume_point(local_checkpoints: str, ray_train: bool):
    """The checkpoint to resume from (None: start afresh), kept on disk while training: the
    newest complete one in `local_checkpoints`, or under Ray Train the run's latest."""
    if not ray_train:
        yield last_complete_checkpoint(local_checkpoints)
        return
    import ray.train
    from ray.train.huggingface.transformers import RayTrainReportCallback

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as folder:
        yield os.path.join(folder, RayTrainReportCallback.CHECKPOINT_NAME)


def last_complete_checkpoint(folder: str) -> str | None:
    """The newest `checkpoint-N` in `folder` whose trainer state was written (the last file a
    checkpoint gets); newer, half-written ones (a kill during a save) are deleted, so that
    transformers' own bookkeeping never meets them."""
    if not os.path.isdir(folder):
        return None
    found = sorted((_checkpoint_step(name), name) for name in os.listdir(folder)
                   if name.startswith("checkpoint-") and _checkpoint_step(name) >= 0)
    for _, name in reversed(found):
        path = os.path.join(folder, name)
        if os.path.isfile(os.path.join(path, TRAINER_STATE)):
            return path
        shutil.rmtree(path, ignore_errors=True)
    return None


def checkpoint_name(path: str, ray_train: bool) -> str:
    """'checkpoint-N (step N)', or Ray Train's latest checkpoint and its step."""
    with open(os.path.join(path, TRAINER_STATE), encoding="utf-8") as f:
        step = json.load(f)["global_step"]
    return (f"Ray Train's latest checkpoint (step {step})" if ray_train
            else f"{os.path.basename(path)} (step {step})")


def _checkpoint_step(name: str) -> int:
    tail = os.path.basename(name).rpartition("-")[2]
    return int(tail) if tail.isdigit() else -1


def save_model(plan: TrainPlan, model, tokenizer, scratch: str) -> None:
    """The trained model (safetensors), its tokenizer and config into the output folder."""
    plan.task.finish_config(model.config, plan.labels, plan.spec.task_options)
    output = plan.spec.output
    if "://" not in output:
        model.save_pretrained(output)
        tokenizer.save_pretrained(output)
        return
    import pyarrow.fs as pafs

    staged = os.path.join(scratch, "model")
    model.save_pretrained(staged)
    tokenizer.save_pretrained(staged)
    fs, root = storage(output)
    pafs.copy_files(staged, root, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=fs)


def write_result(trainer, output, final: dict, details: dict, seconds: float, fs, path: str,
                 task: TrainingTask) -> None:
    state = trainer.state
    metrics = {k.removeprefix("eval_"): v for k, v in final.items()
               if k not in ("epoch",) and not k.endswith(("_runtime", "_per_second"))
               and _is_number(v)}
    metrics.update(task.derived_metrics(metrics))
    result = {
        "log_history": state.log_history, "final_metrics": metrics,
        "global_step": state.global_step, "max_steps": state.max_steps,
        "epochs_run": state.epoch, "best_step": _checkpoint_step(state.best_model_checkpoint)
        if state.best_model_checkpoint else None,
        "final_details": details, "best_metric": state.best_metric,
        "stopped_early": state.global_step < state.max_steps,
        "train_loss": output.training_loss, "train_seconds": seconds,
    }
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(result, indent=2, default=_jsonable).encode())


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def ray_worker_loop(config: dict) -> None:
    """Ray Train's `train_loop_per_worker`."""
    train_worker(config["plan"], ray_train=True)


class ProgressPrinter(TrainerCallback):
    """One line per evaluation (or logging step): epoch, training loss, validation metric."""

    def __init__(self, task: TrainingTask, epochs: float):
        self.task, self.epochs, self.loss = task, epochs, None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.loss = logs["loss"]
            if args.eval_strategy == "no":
                print(f"epoch {state.epoch:.2f}/{self.epochs:g}: training loss "
                      f"{self.loss:.4f}", flush=True)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics:
            return
        value = metrics.get(f"eval_{self.task.metric}")
        best = state.best_metric  # the best before this evaluation
        improved = value is not None and (best is None or (
            value > best if self.task.greater_is_better else value < best))
        loss = "" if self.loss is None else f"training loss {self.loss:.4f}, "
        shown = "n/a" if value is None else f"{value:.4f}"
        print(f"epoch {state.epoch:.2f}/{self.epochs:g}: {loss}validation {self.task.metric} "
              f"{shown}{' (best so far)' if improved else ''}", flush=True)
