"""Running a job: preflight, then the streaming Ray Data pipeline
read -> tokenize (CPU tasks) -> infer (actor pool) -> postprocess -> Parquet, then a summary."""
from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid
from dataclasses import dataclass

from jobs.preflight import Corpus, preflight, provenance
from jobs.spec import JobSpec
from operators.plan import ERROR, JobPlan
from operators.write import (
    output_counts, output_preview, prepare_output, write_empty, write_manifest,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSummary:
    job_id: str
    output: str
    rows_in: int
    rows_out: int
    rows_errored: int
    rows_skipped: int
    files_in: int
    seconds: float
    corrupt_files_skipped: tuple[str, ...] = ()
    preview: tuple[dict, ...] = ()   # a few output rows: id, outputs, error


    def lines(self) -> list[str]:
        rate = self.rows_in / self.seconds if self.seconds > 0 else 0.0
        return [
            f"job {self.job_id}: {self.rows_in} rows in from {self.files_in} file(s), "
            f"{self.rows_out} out, {self.rows_errored} with errors, {self.rows_skipped} skipped",
            f"{self.seconds:.1f} s ({rate:.1f} rows/s); output: {self.output}",
        ] + ([f"skipped {len(self.corrupt_files_skipped)} corrupt file(s): "
              f"{', '.join(self.corrupt_files_skipped)}"] if self.corrupt_files_skipped else []) + [_preview_line(row) for row in self.preview]


def _preview_line(row: dict, width: int = 160) -> str:
    """One output row on one line: strings cut short, lists shown by their first item."""
    def short(value):
        if isinstance(value, float):
            return f"{value:.3f}"
        if isinstance(value, list):
            return f"[{short(value[0])}, ... {len(value)} items]" if len(value) > 1 else (
                f"[{short(value[0])}]" if value else "[]")
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {short(v)}" for k, v in value.items()) + "}"
        if isinstance(value, str):
            return repr(value if len(value) <= 40 else value[:37] + "...")
        return str(value)

    line = "  " + "  ".join(f"{k}={short(v)}" for k, v in row.items() if v is not None)
    return line if len(line) <= width else line[:width - 3] + "..."


def run_job(spec: JobSpec) -> RunSummary:
    start = time.monotonic()
    plan, corpus = preflight(spec)
    prepare_output(spec.output, spec.output_mode)
    run_id = uuid.uuid4().hex[:12]
    started_ray = _ensure_ray()
    try:
        plan = dataclasses.replace(plan, num_gpus=_gpus_per_actor(spec),
                                   torch_threads=_torch_threads(spec), run_id=run_id)
        if corpus.num_rows:
            build_dataset(plan, corpus).write_parquet(spec.output)
    finally:
        if started_ray:
            import ray
            ray.shutdown()
    counts = output_counts(spec.output)
    if counts["files"] == 0:
        write_empty(spec.output, plan.output_schema)
    summary = RunSummary(
        job_id=spec.job_id, output=spec.output, rows_in=corpus.num_rows,
        rows_out=counts["rows_out"], rows_errored=counts["rows_errored"],
        rows_skipped=corpus.num_rows - counts["rows_out"], files_in=len(corpus.files),
        corrupt_files_skipped=corpus.skipped_files,
        seconds=time.monotonic() - start,
        preview=tuple(output_preview(spec.output, _preview_columns(plan))))
    record = dataclasses.asdict(summary)
    del record["preview"]
    write_manifest(spec.output, {
        "run_id": run_id, "spec": spec.model_dump(mode="json"), "provenance": provenance(spec),
        "summary": record})
    return summary


def _preview_columns(plan: JobPlan) -> list[str]:
    """id, the kept input text (else the first kept column), the task's outputs, error."""
    kept_inputs = [c for c in plan.input_columns.values() if c in plan.kept_columns]
    context = kept_inputs or plan.kept_columns[:1]
    outputs = [f.name for f in plan.task.output_fields()]
    return [plan.id_column, *context, *outputs, ERROR]


def build_dataset(plan: JobPlan, corpus: Corpus):
    """The lazy Ray Dataset of output rows (nothing runs until it is consumed)."""
    import ray.data

    from operators.infer import Infer
    from operators.postprocess import postprocess_batch
    from operators.read import CorpusDatasource
    from operators.tokenize import tokenize_batch

    spec = plan.spec
    window = spec.batching.window_rows
    source = CorpusDatasource(corpus.fs, corpus.files, plan.read_schema,
                              spec.id_column, rows_per_block=window)
    ds = ray.data.read_datasource(source)
    ds = ds.map_batches(tokenize_batch, fn_kwargs={"plan": plan}, batch_format="pyarrow",
                        batch_size=window, num_cpus=0.5)
    ds = ds.map_batches(Infer, fn_constructor_kwargs={"plan": plan}, batch_format="pyarrow",
                        batch_size=window,
                        compute=ray.data.ActorPoolStrategy(size=spec.resources.concurrency),
                        num_cpus=spec.resources.cpus_per_actor, num_gpus=plan.num_gpus)
    return ds.map_batches(postprocess_batch, fn_kwargs={"plan": plan}, batch_format="pyarrow",
                          batch_size=None, num_cpus=0.25)


def _ensure_ray() -> bool:
    """Connect to RAY_ADDRESS, or start a local Ray on loopback. True when we started one."""
    import ray

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(include_dashboard=False, logging_level=logging.WARNING,
                 _node_ip_address="127.0.0.1")
    return True


def _gpus_per_actor(spec: JobSpec) -> float:
    import ray

    requested = spec.resources.num_gpus
    if requested != "auto":
        return float(requested)
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def _torch_threads(spec: JobSpec) -> int:
    if spec.resources.torch_threads:
        return spec.resources.torch_threads
    return max(1, (os.cpu_count() or 1) // spec.resources.concurrency)
