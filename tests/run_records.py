"""Job outputs for report tests without Ray: output rows from the operator chain run in-process,
written as Parquet files beside a manifest of the shape the runner records
(summary, placement, stats; see jobs/reporting/report.py)."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpusmill.jobs.preflight import preflight
from corpusmill.operators.plan import ERROR
from corpusmill.jobs.stores.output import write_manifest
from corpusmill.spec import parse_spec
from tests.corpora import run_operators


def run_in_process(spec_data: dict, base_dir: Path = Path("."), threads: int = 2):
    """(plan, output table) of a job spec run through the operators in this process."""
    import dataclasses

    spec = parse_spec(spec_data, base_dir=base_dir)
    plan, corpus = preflight(spec)
    return plan, run_operators(dataclasses.replace(plan, torch_threads=threads), corpus)


def with_column(table: pa.Table, name: str, values: list) -> pa.Table:
    """`table` with column `name` replaced by `values` (its type inferred)."""
    return table.set_column(table.schema.get_field_index(name), name, pa.array(values))


def write_output(plan, table: pa.Table, files: int = 2, stats: bool = True,
                 earlier: pa.Table | None = None) -> dict:
    """Write `table` as `files` Parquet files in the job's output folder (plus `earlier`, rows
    of a previous run, as one more file) and a completed run's manifest; returns it."""
    output = Path(plan.spec.output)
    output.mkdir(parents=True, exist_ok=True)
    names, step = [], -(-table.num_rows // files)
    for i in range(files):
        name = f"part-run2-{i}.parquet"
        pq.write_table(table.slice(i * step, step), output / name)
        names.append(name)
    if earlier is not None:
        pq.write_table(earlier, output / "part-run1-0.parquet")
    errored = int(pc.sum(pc.is_valid(table.column(ERROR)).cast(pa.int64())).as_py() or 0)
    rows = table.num_rows
    manifest = {
        "job_id": plan.spec.job_id, "run_id": "run2", "status": "complete",
        "spec": plan.spec.model_dump(mode="json"),
        "provenance": {"task": plan.spec.task, "model": plan.spec.model, "options": {},
                       "corpusmill_version": "test", "job_id": plan.spec.job_id,
                       "created": "2026-11-29T15:00:00+00:00"},
        "summary": {"rows_in": rows + (earlier.num_rows if earlier is not None else 0),
                    "rows_out": rows + (earlier.num_rows if earlier is not None else 0),
                    "rows_errored": errored, "rows_skipped": 0, "rows_truncated": 0,
                    "rows_before": earlier.num_rows if earlier is not None else 0,
                    "files_in": 1, "seconds": 12.5, "incremental": earlier is not None,
                    "files_done_before": 1 if earlier is not None else 0,
                    "corrupt_files_skipped": [], "job_id": plan.spec.job_id,
                    "output": str(output)},
    }
    if stats:
        manifest["placement"] = {
            "device": "cpu", "num_gpus_per_actor": 0.0, "dtype": "float32", "backend": "torch",
            "actors": {"min": 1, "max": 2, "start": 1, "peak": 2},
            "nodes": [{"node_id": "ab12cd34", "host": "127.0.0.1", "rows": rows, "actors": 2,
                       "gpus": 0}], "torch_threads": 1}
        manifest["stats"] = {
            "started": "2026-11-29T15:00:00+00:00", "finished": "2026-11-29T15:00:12+00:00",
            "stages": {"read": {"rows": rows, "seconds": 0.4, "blocks": 1},
                       "tokenize": {"rows": rows, "seconds": 0.9, "blocks": 1},
                       "inference": {"rows": rows, "seconds": 9.1, "blocks": 2},
                       "postprocess": {"rows": rows, "seconds": 0.2, "blocks": 2},
                       "write": {"rows": rows, "seconds": 0.3, "files": files}},
            "tokens": {"tokens": 18211, "padded_tokens": 19004, "windows": rows},
            "actors": [{"actor": "1234@ab12cd34", "node_id": "ab12cd34", "rows": rows // 2,
                        "seconds": 5.0},
                       {"actor": "1240@ab12cd34", "node_id": "ab12cd34",
                        "rows": rows - rows // 2, "seconds": 4.1}],
            "timeline": [[float(t), min(rows, max(0, (t - 2) * rows // 9))] for t in range(13)],
            "files_written": names,
        }
    write_manifest(str(output), manifest)
    return manifest


def joined_output(base: pa.Table, outputs: dict[str, pa.Table]) -> pa.Table:
    """The output of a job with several tasks over the rows of `base` (id and kept columns),
    from what each task's single-task job wrote for them (`outputs`: name -> its output
    columns and `error`): each task's columns prefixed `<name>_`, then the joined `error`
    (operators/several.py)."""
    from corpusmill.operators.several import _joined_error

    table = base
    for name, out in outputs.items():
        for column in out.column_names:
            table = table.append_column(f"{name}_{column}", out.column(column))
    failed_by = [(name, out.column(ERROR)) for name, out in outputs.items()]
    return table.append_column(ERROR, _joined_error(failed_by, base.num_rows))


def write_several_output(spec, table: pa.Table, files: int = 2, stats: bool = True,
                         earlier: pa.Table | None = None, seconds: dict | None = None,
                         tokenized_rows: int | None = None) -> dict:
    """`write_output` for a job with several tasks (`spec`: its JobSpec): the manifest as the
    runner records it then, with each task's provenance and placement, `inference:<name>`
    stages (busy `seconds` by task; default 1 s each) and the tokenize stage's rows
    (`tokenized_rows`: default one tokenization of every row)."""
    from types import SimpleNamespace

    manifest = write_output(SimpleNamespace(spec=spec), table, files, stats, earlier)
    specs = spec.task_specs()
    manifest["provenance"] = {**{k: v for k, v in manifest["provenance"].items()
                                 if k not in ("task", "model", "options")},
                              "tasks": {name: {"task": one.task, "model": one.model,
                                               "revision": one.revision,
                                               "options": one.task_options.model_dump(mode="json"),
                                               "max_length": one.batching.max_length}
                                        for name, one in specs.items()}}
    if stats:
        rows = table.num_rows
        seconds = seconds or {name: 1.0 for name in specs}
        stages = manifest["stats"]["stages"]
        stages["inference"] = {"rows": rows * len(specs), "seconds": sum(seconds.values()),
                               "blocks": 2 * len(specs)}
        stages["tokenize"]["rows"] = rows if tokenized_rows is None else tokenized_rows
        for name in specs:
            stages[f"inference:{name}"] = {"rows": rows, "seconds": seconds[name], "blocks": 2}
        placement = manifest["placement"]
        placement["tasks"] = {name: {key: placement[key] for key in (
            "device", "num_gpus_per_actor", "dtype", "backend", "actors", "torch_threads")}
            for name in specs}
    write_manifest(str(Path(spec.output)), manifest)
    return manifest
