"""The output's dataset card: `<output>/.corpusmill/report/README.md`, a Hugging Face dataset
card (the Hub's YAML header, then a short description), rebuilt with the run report at the
end of every run and by `corpusmill report`.

The header holds what the Hub and `datasets` read: `configs` (the data files: the output's
Parquet files, never `.corpusmill/`), `dataset_info` (the features, in `datasets`' own YAML
form, and the row count), tags, and a `corpusmill` block with the provenance: task, model,
revision, options, input (a hub input's commit), corpusmill version, job id, when, the row
counts, and the metrics against gold when the job has an `evaluate` block. A job with several
tasks lists each (task, model, revision, options, its metrics) under `corpusmill.tasks`.

It lives in `.corpusmill/report/`, not at the top of the output, because readers of a Parquet
folder (pyarrow, so `pandas.read_parquet(OUTPUT)`, and Ray) skip only `_`- and `.`-prefixed
names: a top-level README.md would break them. To publish the output as a Hub dataset,
upload the folder without `.corpusmill/` and this card as the repository's README.md (README,
"Python")."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

CARD = "README.md"  # in the report folder

# corpusmill tasks that are also Hub task categories
_HUB_TASKS = {"text-classification", "token-classification", "question-answering", "fill-mask",
              "feature-extraction", "zero-shot-classification", "text-generation",
              "summarization", "translation", "text2text-generation"}


def render_card(report: dict, manifest: dict, schema: pa.Schema | None,
                partition_by: list[str]) -> str:
    """The card's text, from the built run report (jobs/reporting/report.py), the manifest and the
    output schema."""
    from huggingface_hub import DatasetCard, DatasetCardData

    job = report.get("job") or {}
    provenance = manifest.get("provenance") or {}
    if provenance.get("tasks"):
        return _render_several(report, manifest, schema, partition_by)
    rows = report.get("rows") or {}
    task = job.get("task") or provenance.get("task")
    metrics = (report.get("metrics") or {})
    made = {key: provenance.get(key) for key in ("task", "model", "revision", "options",
                                                 "corpusmill_version", "job_id", "created",
                                                 "max_length")}
    made.update({"input": job.get("input"), "input_source": provenance.get("input"),
                 "rows": {k: v for k, v in rows.items() if type(v) is int},
                 "metrics": _headline(metrics)})
    pattern = "/".join(["*=*"] * len(partition_by) + ["*.parquet"])
    info = {"splits": [{"name": "train", "num_examples": int(rows.get("out") or 0)}]}
    if schema is not None:
        info = {"features": _features(schema), **info}
    data = DatasetCardData(
        pretty_name=f"{task} with {_short(provenance.get('model'))}",
        tags=["corpusmill", task],
        task_categories=[task] if task in _HUB_TASKS else None,
        configs=[{"config_name": "default",
                  "data_files": [{"split": "train", "path": pattern}]}],
        dataset_info=info,
        corpusmill={k: v for k, v in made.items()
                    if k == "revision" or v not in (None, {}, [])},
    )
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{_body(made, schema, task)}")
    return str(card)


def _render_several(report: dict, manifest: dict, schema: pa.Schema | None,
                    partition_by: list[str]) -> str:
    """The card of a job with several tasks: each task (task, model, revision, options) in
    the header's `corpusmill.tasks` and in the text, its columns' prefix, its metrics."""
    from huggingface_hub import DatasetCard, DatasetCardData

    job = report.get("job") or {}
    provenance = manifest.get("provenance") or {}
    rows = report.get("rows") or {}
    tasks = {name: {key: made.get(key) for key in ("task", "model", "revision", "options",
                                                   "max_length")}
             for name, made in provenance["tasks"].items()}
    scored = ((report.get("metrics") or {}).get("tasks")) or {}
    made = {"tasks": tasks}
    made.update({key: provenance.get(key) for key in ("corpusmill_version", "job_id",
                                                      "created")})
    made.update({"input": job.get("input"), "input_source": provenance.get("input"),
                 "rows": {k: v for k, v in rows.items() if type(v) is int},
                 "metrics": {name: headline for name, result in scored.items()
                             if (headline := _headline(result))}})
    kinds = list(dict.fromkeys(t["task"] for t in tasks.values()))
    pattern = "/".join(["*=*"] * len(partition_by) + ["*.parquet"])
    info = {"splits": [{"name": "train", "num_examples": int(rows.get("out") or 0)}]}
    if schema is not None:
        info = {"features": _features(schema), **info}
    title = " + ".join(tasks)
    data = DatasetCardData(
        pretty_name=f"{title} ({', '.join(kinds)})",
        tags=["corpusmill", *kinds],
        task_categories=[k for k in kinds if k in _HUB_TASKS] or None,
        configs=[{"config_name": "default",
                  "data_files": [{"split": "train", "path": pattern}]}],
        dataset_info=info,
        corpusmill={k: v for k, v in made.items() if v not in (None, {}, [])},
    )
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{_body_several(made, schema)}"))


def _body_several(made: dict, schema: pa.Schema | None) -> str:
    tasks = made["tasks"]
    lines = [f"# {' + '.join(tasks)}", "",
             f"Made by [corpusmill](https://pypi.org/project/corpusmill/) "
             f"{made.get('corpusmill_version') or ''}: {len(tasks)} tasks in one pass over "
             f"`{made.get('input')}`"
             + (f" (commit `{made['input_source']['hub']['commit']}`)"
                if (made.get("input_source") or {}).get("hub") else "")
             + f"; job `{made.get('job_id')}`, {made.get('created')}. Each task's columns are "
               f"prefixed with its name; `error` joins the tasks' errors (`<name>: ...`).", ""]
    for name, task in tasks.items():
        options = ", ".join(f"{k}={v!r}" for k, v in (task.get("options") or {}).items())
        lines.append(f"- `{name}` (columns `{name}_*`): task `{task['task']}` with model "
                     f"`{task['model']}`" + (f" at revision `{task['revision']}`"
                                            if task.get("revision") else "")
                     + (f"; options: {options}" if options else ""))
    lines.append("")
    rows = made.get("rows") or {}
    if rows:
        lines += ["Rows: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in rows.items()),
                  ""]
    for name, metrics in (made.get("metrics") or {}).items():
        if metrics:
            lines += [f"Quality of `{name}` against gold: " + ", ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in metrics.items()), ""]
    return "\n".join(lines + _columns_and_loading(schema))


def _columns_and_loading(schema) -> list[str]:
    """The card's closing lines: the output's columns, and how to load it."""
    lines = []
    if schema is not None:
        lines += ["| column | type |", "|---|---|"]
        lines += [f"| `{f.name}` | `{f.type}` |" for f in schema] + [""]
    return lines + ["Load the output folder with `pandas.read_parquet(FOLDER)`; published on "
                    "the Hub with this card as its README.md, with "
                    "`datasets.load_dataset(REPO_ID)`.", ""]


def write_card(fs, folder: str, output: str, report: dict, manifest: dict) -> str:
    """Write the card into the report `folder` (on `fs`); returns its path."""
    from corpusmill.jobs.stores.output import data_files

    _, root, files = data_files(output)
    schema = None
    if files:
        with fs.open_input_file(f"{root}/{files[0]}") as f:
            schema = pq.ParquetFile(f).schema_arrow
        schema = schema.remove_metadata()
    partition_by = ((manifest.get("spec") or {}).get("partition_by")) or []
    text = render_card(report, manifest, schema, partition_by)
    path = f"{folder}/{CARD}"
    with fs.open_output_stream(path) as f:
        f.write(text.encode())
    return path


def _features(schema: pa.Schema) -> list:
    """`datasets`' YAML form of the features (what its push_to_hub writes into cards)."""
    from datasets import Features

    return Features.from_arrow_schema(schema)._to_yaml_list()


def _headline(metrics: dict) -> dict:
    """The scalar metrics (per-class tables stay in metrics.json), and rows scored."""
    scores = metrics.get("metrics") or {}
    out = {k: round(v, 6) for k, v in scores.items() if isinstance(v, (int, float))}
    if out and metrics.get("gold"):
        out = {"gold": metrics["gold"], **out,
               "rows_scored": (metrics.get("rows") or {}).get("scored")}
    return out


def _short(model) -> str:
    text = str(model or "a model")
    return text.rstrip("/").split("/")[-1] if text.count("/") > 1 else text


def _body(made: dict, schema: pa.Schema | None, task: str) -> str:
    lines = [f"# {task} with {_short(made.get('model'))}", "",
             f"Made by [corpusmill](https://pypi.org/project/corpusmill/) "
             f"{made.get('corpusmill_version') or ''}: task `{task}` with model "
             f"`{made.get('model')}`" + (f" at revision `{made['revision']}`"
                                        if made.get("revision") else "")
             + f", over `{made.get('input')}`"
             + (f" (commit `{made['input_source']['hub']['commit']}`)"
                if (made.get("input_source") or {}).get("hub") else "")
             + f"; job `{made.get('job_id')}`, {made.get('created')}.", ""]
    rows = made.get("rows") or {}
    if rows:
        lines += ["Rows: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in rows.items()),
                  ""]
    if made.get("metrics"):
        lines += ["Quality against gold: " + ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in made["metrics"].items()), ""]
    return "\n".join(lines + _columns_and_loading(schema))
