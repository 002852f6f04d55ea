"""Checks that run before any Ray work: the input exists and has the columns the task needs, the
output can be written, and the model exists and fits the task. Each failure is a JobError whose
message names the file, column or key at fault and the fix. Success yields the `JobPlan`."""
from __future__ import annotations

import dataclasses
import json
import os
import threading
from datetime import datetime, timezone

import pyarrow as pa

from corpusmill.errors import JobError
from corpusmill.jobs.reporting.evaluate import check_gold
from corpusmill.operators.engines import check_backend
from corpusmill.operators.loading import (
    PACKAGE_SCHEME, _package_path, load_tokenizer, local_model, resolve_model_ref,
    tokenizer_fingerprint,
)
from corpusmill.spec import JobSpec, looks_like_path
from corpusmill.operators.plan import ERROR, JobPlan, SeveralPlan
from corpusmill.jobs.stores.corpus import Corpus, is_bytes, is_text, open_corpus
from corpusmill.jobs.stores.output import check_writable
from corpusmill.operators.readers.files import GENERATED_ID
from corpusmill.pipelines.base import ModelMismatch
from corpusmill.pipelines.registry import get_task

PROVENANCE_KEY = b"corpusmill"
_REMOTE_CODE = ("model {model!r} needs code shipped with the checkpoint (config.json has "
                "auto_map), which corpusmill does not run by default. Set trust_remote_code: true "
                "in the job spec only if you trust the model's source.")


def preflight(spec: JobSpec, *, load_weights: bool = False, corpus: Corpus | None = None,
              one_of_several: bool = False, model: ModelPart | None = None
              ) -> tuple[JobPlan, Corpus]:
    """Validate everything that can be validated without Ray; `load_weights` also loads the
    model once (what `corpusmill validate` does). `corpus`: rows from elsewhere than the
    spec's input (a Ray Dataset given to corpusmill.annotate, described by its schema).
    `one_of_several`: `spec` is one task of a job with several (`preflight_several` checks
    the job-wide parts once: ids, output location, partitions, the prefixed output names).
    `model`: its model part, already started (`ModelLoad`); by default started here.

    The model part (config, tokenizer, weights) is loaded in a thread while the corpus is
    inspected (`ModelLoad`); its errors are raised where they were checked before, after
    every corpus, column, id and output check, so which error a job gets does not change."""
    task = get_task(spec.task)
    owned = model is None
    if owned:
        model = ModelLoad([(spec, task)], load_weights).start().part(0)
    try:
        return _preflight(spec, task, model, corpus, one_of_several)
    finally:
        if owned:
            model.abandon()  # a check above failed: the model's loading stops at its next step


def _preflight(spec: JobSpec, task, model: ModelPart, corpus: Corpus | None,
               one_of_several: bool) -> tuple[JobPlan, Corpus]:
    if corpus is None:
        corpus = open_corpus(spec.input, skip_corrupt=spec.skip_corrupt_files,
                             keep_contents=spec.id_column is not None)
    input_columns = _input_columns(spec, task.input_columns, corpus.files)
    id_column = _id_column(spec, corpus.files)
    if spec.id_column is not None and not one_of_several:
        corpus = _check_ids_unique(corpus, id_column, skip_corrupt=spec.skip_corrupt_files)
    if not one_of_several:
        corpus = corpus.without_contents()  # read once for the id check; a run needs none
    kept = _kept_columns(spec, corpus.files, id_column)
    if not one_of_several:
        _check_collisions(kept, [f.name for f in task.output_fields()] + [ERROR])
    if not one_of_several:  # job-wide: preflight_several checks them once
        _check_partition_by(spec, kept, id_column)
        _check_output_location(spec)
    check_backend(spec)

    model_ref, config, tokenizer = model.result()  # its errors, in their place

    read_schema = _read_schema(corpus.files, id_column, input_columns, kept)
    check_gold(spec, task, list(dict.fromkeys(n for f in corpus.files for n in f.schema.names)),
               read_schema, kept, input_columns)
    output_fields = ([read_schema.field(id_column)] + [read_schema.field(c) for c in kept]
                     + task.output_fields_for_model(config) + [pa.field(ERROR, pa.string())])
    output_schema = pa.schema(output_fields, metadata={PROVENANCE_KEY: json.dumps(
        provenance(spec, corpus), sort_keys=True).encode()})
    max_length = _max_length(spec, tokenizer, config)
    plan = JobPlan(
        spec=spec, model_ref=model_ref, max_length=max_length,
        id_column=id_column, input_columns=input_columns, kept_columns=kept,
        read_schema=read_schema, output_schema=output_schema, num_gpus=0.0, min_actors=1,
        max_actors=1,
        torch_threads=spec.resources.torch_threads or 0, model_config=config,
        share_key=_share_key(task, tokenizer, spec, max_length, input_columns))
    return plan, corpus


def _model_part(spec: JobSpec, task, load_weights: bool, stop=lambda: None):
    """(model reference, config, tokenizer): the model checks of a preflight, in their order,
    with the weights loaded once when `load_weights`. `stop` is called between steps (a
    background load that is no longer wanted raises there)."""
    model_ref = resolve_model_ref(spec.model)
    folder = local_model(model_ref)  # a remote folder's local copy; the plan keeps the URI
    stop()
    config = _load_config(spec, folder)
    try:
        task.check_model(config, spec.task_options)
    except ModelMismatch as e:
        raise JobError(f"model {spec.model!r}: {e}") from None
    stop()
    tokenizer = _load_tokenizer(spec, folder)
    _check_weights(spec, folder)
    if load_weights:
        stop()
        _load_weights(spec, task, folder)
    return model_ref, config, tokenizer


class _Abandoned(Exception):
    """The preflight failed before it needed the model: a background load stops."""


class ModelLoad:
    """The model part of the preflight of one or more tasks (`_model_part`, in task order), in
    one background thread started before the corpus is opened: reading the corpus is mostly
    waiting on the store (or the disk), loading a model mostly CPU (importing transformers
    and torch, the model's code, the weights), so the two overlap.

    Only a model that loading merely reads from this machine's disk is loaded there: a folder
    (a path, or one inside an installed package) with a config.json, and no
    trust_remote_code. A hub id (network, downloads), a folder on object storage (copied to a
    cache), a GGUF file (converted, ~30 s) and checkpoint code (run) are loaded where they
    were, after the corpus checks, in the caller's thread; the background thread then only
    imports what that loading imports. Either way the model's errors are raised by
    `ModelPart.result()`, called where the checks were made before: after every corpus, id
    and output check, so a job with a bad corpus and a bad model still gets the corpus's
    error; for a job refused before its model, nothing beyond reading local files (and
    importing) was started for the model.

    `abandon()` (the preflight failed first) stops the thread at its next step."""

    def __init__(self, items: list[tuple[JobSpec, object]], load_weights: bool):
        self._parts = [ModelPart(self, spec, task, load_weights) for spec, task in items]
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=self._run, name="corpusmill-model", daemon=True)

    def start(self) -> ModelLoad:
        self._thread.start()
        return self

    def part(self, index: int) -> ModelPart:
        return self._parts[index]

    def abandon(self) -> None:
        self._abandoned.set()

    def _stop(self) -> None:
        if self._abandoned.is_set():
            raise _Abandoned()

    def _run(self) -> None:
        for part in self._parts:
            try:
                self._stop()
                if part.in_background:
                    part.value = _model_part(part.spec, part.task, part.load_weights,
                                             self._stop)
                else:
                    _import_for_loading(part.load_weights)
            except BaseException as e:  # noqa: BLE001 - raised by result(), in its place
                part.error = e
            finally:
                part.done.set()
            if isinstance(part.error, _Abandoned):
                for rest in self._parts:
                    rest.done.set()
                return


class ModelPart:
    """One task's model part within a `ModelLoad`."""

    def __init__(self, load: ModelLoad, spec: JobSpec, task, load_weights: bool):
        self._load, self.spec, self.task, self.load_weights = load, spec, task, load_weights
        self.in_background = _reads_only(spec)
        self.done = threading.Event()
        self.value, self.error = None, None

    def result(self):
        """(model reference, config, tokenizer), or what loading raised."""
        self.done.wait()
        if not self.in_background:
            return _model_part(self.spec, self.task, self.load_weights)
        if self.error is not None:
            raise self.error
        return self.value

    def abandon(self) -> None:
        self._load.abandon()


def _reads_only(spec: JobSpec) -> bool:
    """Loading the model only reads files on this machine (`ModelLoad`)."""
    if spec.trust_remote_code:
        return False
    try:
        folder = _package_path(spec.model) if spec.model.startswith(PACKAGE_SCHEME) else spec.model
    except Exception:  # noqa: BLE001 - refused in its place, by _model_part
        return False
    return "://" not in folder and os.path.isfile(os.path.join(folder, "config.json"))


def _import_for_loading(load_weights: bool) -> None:
    """Import what loading a model imports (transformers; torch for the weights), ahead of
    it. An import that fails here fails again, reported, where the model is loaded."""
    try:
        import transformers  # noqa: F401
        from transformers import AutoConfig, AutoTokenizer  # noqa: F401

        if load_weights:
            import torch  # noqa: F401
    except Exception:  # noqa: BLE001
        pass
def _share_key(task, tokenizer, spec, max_length: int, input_columns: dict) -> str | None:
    """What makes two tasks' tokenization the same (operators/plan.py `share_key`)."""
    import hashlib

    fingerprint = tokenizer_fingerprint(tokenizer)
    encode = task.encode_key(tokenizer, spec.task_options, max_length)
    if fingerprint is None or encode is None:
        return None
    key = json.dumps([fingerprint, encode, sorted(input_columns.items())])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def preflight_several(spec: JobSpec, *, load_weights: bool = False,
                      corpus: Corpus | None = None) -> tuple[SeveralPlan, Corpus]:
    """The preflight of a job with several tasks: each task's as its own job's would be
    (errors name the task), over the corpus opened and its ids checked once; then the joined
    output's columns (each task's prefixed with its name, no collisions). The tasks' models
    load in one background thread, in task order, while the corpus is read (`ModelLoad`)."""
    tasks = spec.task_specs()
    try:
        known = [(one, get_task(one.task)) for one in tasks.values()]
    except Exception:  # noqa: BLE001 - an unknown task: refused in its place below
        known = None
    models = None if known is None else ModelLoad(known, load_weights).start()
    try:
        return _preflight_several(spec, tasks, models, load_weights, corpus)
    finally:
        if models is not None:
            models.abandon()  # a check failed: the models' loading stops at its next step


def _preflight_several(spec: JobSpec, tasks: dict[str, JobSpec], models: ModelLoad | None,
                       load_weights: bool, corpus: Corpus | None
                       ) -> tuple[SeveralPlan, Corpus]:
    if corpus is None:
        corpus = open_corpus(spec.input, skip_corrupt=spec.skip_corrupt_files,
                             keep_contents=spec.id_column is not None)
    plans: dict[str, JobPlan] = {}
    for index, (name, one) in enumerate(tasks.items()):
        try:
            plans[name], _ = preflight(one, load_weights=load_weights, corpus=corpus,
                                       one_of_several=True,
                                       model=None if models is None else models.part(index))
        except JobError as e:
            raise JobError(f"task {name!r}: {e}") from None
    first = next(iter(plans.values()))
    id_column, kept = first.id_column, first.kept_columns
    if spec.id_column is not None:
        corpus = _check_ids_unique(corpus, id_column, skip_corrupt=spec.skip_corrupt_files)
    corpus = corpus.without_contents()
    inputs = {column: None for plan in plans.values() for column in plan.input_columns.values()}
    read_schema = _read_schema(corpus.files, id_column, {c: c for c in inputs}, kept)
    fields = [read_schema.field(id_column)] + [read_schema.field(c) for c in kept]
    owners = {f.name: "the corpus (kept column)" for f in fields}
    for name, plan in plans.items():
        for field in task_fields(plan):
            column = f"{name}_{field.name}"
            if column in owners:
                raise JobError(f"output column {column!r} of task {name!r} would collide with "
                               f"{owners[column]}; rename the task, or leave the column out "
                               f"with keep_columns: [...]")
            owners[column] = f"task {name!r}'s"
            fields.append(field.with_name(column))
    if ERROR in owners:
        raise JobError(f"corpus column {ERROR!r} would collide with the output's error column; "
                       f"list the columns to keep with keep_columns: [...] leaving it out")
    fields.append(pa.field(ERROR, pa.string()))
    output_schema = pa.schema(fields, metadata={PROVENANCE_KEY: json.dumps(
        provenance(spec, corpus), sort_keys=True).encode()})
    _check_partition_by(spec, kept, id_column)
    plans = {name: dataclasses.replace(plan, read_schema=read_schema)
             for name, plan in plans.items()}
    return SeveralPlan(spec=spec, tasks=plans, id_column=id_column, kept_columns=kept,
                       read_schema=read_schema, output_schema=output_schema), corpus


def task_fields(plan: JobPlan) -> list[pa.Field]:
    """One task's columns in a joined output, before the prefix: its outputs, then its
    `error` (null where it succeeded)."""
    ours = plan.task_output_names | {ERROR}
    return [f for f in plan.output_schema if f.name in ours]


def provenance(spec: JobSpec, corpus: Corpus | None = None) -> dict:
    """How the output was made; written into every output file's Parquet metadata. `input`:
    where the corpus came from when that is more than its path (a hub input: the commit)."""
    source = {"input": corpus.source} if corpus is not None and corpus.source else {}
    if spec.several:
        return {**source, "tasks": {
            name: {"task": one.task, "model": one.model, "revision": one.revision,
                   "options": one.task_options.model_dump(mode="json"),
                   "max_length": one.batching.max_length}
            for name, one in spec.task_specs().items()},
            "corpusmill_version": corpusmill_version(), "job_id": spec.job_id,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return {**source,
        "task": spec.task, "model": spec.model, "revision": spec.revision,
        "options": spec.task_options.model_dump(mode="json"),
        "corpusmill_version": corpusmill_version(), "job_id": spec.job_id,
        "max_length": spec.batching.max_length,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def corpusmill_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("corpusmill")
    except PackageNotFoundError:
        return "unknown"


def _describe_columns(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} ({f.type})" for f in schema)


def _input_columns(spec, task_inputs, files) -> dict[str, str]:
    stray = sorted(set(spec.columns) - set(task_inputs))
    if stray:
        raise JobError(f"columns maps {', '.join(map(repr, stray))}, but {spec.task} reads only "
                       f"{', '.join(task_inputs)}; write e.g. columns: {{{task_inputs[0]}: "
                       f"<corpus column>}}")
    mapping = {name: spec.columns.get(name, name) for name in task_inputs}
    for name, column in mapping.items():
        for f in files:
            if column not in f.schema.names:
                hint = "" if name in spec.columns else (
                    f"; map the task input to a corpus column with columns: {{{name}: <column>}}")
                raise JobError(f"column {column!r} (task input {name!r}) is not in {f.name!r}; "
                               f"columns present: {_describe_columns(f.schema)}{hint}")
            arrow_type = f.schema.field(column).type
            if not (is_text(arrow_type) or is_bytes(arrow_type)):
                raise JobError(f"column {column!r} of {f.name!r} is {arrow_type}, not text; "
                               f"{spec.task} input {name!r} needs a string (or UTF-8 binary) "
                               f"column")
    return mapping


def _id_column(spec, files) -> str:
    if spec.id_column is None:
        for f in files:
            if GENERATED_ID in f.schema.names:
                raise JobError(f"{f.name!r} already has a column {GENERATED_ID!r}; set "
                               f"id_column: {GENERATED_ID} to use it as the row id, or rename it")
        return GENERATED_ID
    for f in files:
        if spec.id_column not in f.schema.names:
            raise JobError(f"id_column {spec.id_column!r} is not in {f.name!r}; columns present: "
                           f"{_describe_columns(f.schema)}")
    return spec.id_column


ID_THREADS = 16  # files whose ids are read at a time (object stores: mostly waiting)


def _check_ids_unique(corpus: Corpus, id_column: str, skip_corrupt: bool = False) -> Corpus:
    """Resumes and joins match rows by id, so ids must be unique and present. Streams the id
    column of every file once, as the one type all files' id columns widen to (string beside
    large_string, int32 beside int64), into hash partitions on local disk (jobs/stores/ids.py):
    the driver holds one batch per thread and one partition at a time, whatever the corpus's
    size. Files are read ID_THREADS at a time in groups (`file_groups`), a small file's ids
    from the content inspection kept (`Corpus.contents`: no request), and hashed a batch of
    several files at a time (`SpillBuffer`). A file whose id column cannot be decoded is
    refused (the first in order, named), or left out under `skip_corrupt` (the returned
    corpus no longer has it). The returned corpus holds no file contents."""
    import dataclasses
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.compute as pc

    from corpusmill.jobs.stores.corpus import iter_ids
    from corpusmill.jobs.stores.ids import (
        IdPartitions, SpillBuffer, file_groups, find_duplicates, partitions_for,
    )

    id_type = _unified_types(corpus.files, {id_column})[id_column]
    files = corpus.files
    ids = IdPartitions(partitions_for(corpus.num_rows))

    def spill(group: range) -> dict[int, tuple[str, object]]:
        """What is wrong with files of `group`: source -> ('corrupt', error) or ('null', row)."""
        problems = {}
        with SpillBuffer(ids) as buffer:
            for source in group:
                row = 0
                try:
                    for values in iter_ids(corpus.fs, files[source], id_column, id_type,
                                           corpus.contents.get(files[source].path)):
                        if values.null_count:
                            problems[source] = (
                                "null", row + pc.index(pc.is_null(values), True).as_py())
                            break
                        buffer.add(values, source)
                        row += len(values)
                except (OSError, pa.ArrowInvalid) as e:
                    problems[source] = ("corrupt", e)
        return problems

    with ids, ThreadPoolExecutor(max(1, min(ID_THREADS, len(files)))) as pool:
        problems = {}
        for found in pool.map(spill, file_groups(len(files), ID_THREADS)):
            problems.update(found)
        skipped, corrupt = set(), []
        for source in sorted(problems):  # the first file in order is named
            f, (what, detail) = files[source], problems[source]
            if what == "null":
                raise JobError(f"id_column {id_column!r} is null in {f.name!r} (first at row "
                               f"{detail}); every row needs an id, or drop id_column to have "
                               f"'<file>:<row>' ids generated")
            if not skip_corrupt:
                raise JobError(f"cannot read the id column {id_column!r} of Parquet file "
                               f"{f.name!r}: {detail}. Its data is damaged (the footer reads "
                               f"fine); repair or remove it, or set skip_corrupt_files: true to "
                               f"skip such files (they are listed in the run summary)") from None
            skipped.add(source)
            corrupt.append(f"{f.name} (id column unreadable)")
        if len(skipped) == len(files):
            raise JobError(f"none of the {len(files)} Parquet file(s) has a readable id "
                           f"column {id_column!r}")
        found = find_duplicates(
            ids, lambda source: iter_ids(corpus.fs, files[source], id_column, id_type,
                                         corpus.contents.get(files[source].path)),
            len(files), skip=skipped, threads=ID_THREADS)
    if found.count:
        shown = [f"{value!r} x{count} (in {', '.join(files[s].name for s in where)})"
                 for value, count, where in found.examples]
        raise JobError(f"id_column {id_column!r} has {found.count} duplicated id(s), e.g. "
                       f"{'; '.join(shown)}. Ids must be unique so every row is written exactly "
                       f"once; deduplicate the corpus, or drop id_column to use '<file>:<row>' ids")
    return dataclasses.replace(corpus, files=[f for i, f in enumerate(files) if i not in skipped],
                               skipped_files=corpus.skipped_files + tuple(corrupt), contents={})


def _kept_columns(spec, files, id_column) -> list[str]:
    if spec.keep_columns is None:
        seen: dict[str, None] = {}
        for f in files:
            seen.update(dict.fromkeys(f.schema.names))
        return [c for c in seen if c != id_column]
    for column in spec.keep_columns:
        for f in files:
            if column not in f.schema.names:
                raise JobError(f"keep_columns names {column!r}, which is not in {f.name!r}; "
                               f"columns present: {_describe_columns(f.schema)}")
    return [c for c in dict.fromkeys(spec.keep_columns) if c != id_column]


def _check_collisions(kept, output_names) -> None:
    clash = [c for c in kept if c in output_names]
    if clash:
        raise JobError(f"corpus column(s) {', '.join(map(repr, clash))} would collide with the "
                       f"output columns {', '.join(output_names)}; list the columns to keep "
                       f"with keep_columns: [...] leaving them out")


def _check_partition_by(spec, kept, id_column) -> None:
    """Output partitions are made from kept corpus columns (values known before inference)."""
    unknown = [c for c in spec.partition_by if c not in kept or c == id_column]
    if unknown:
        raise JobError(f"partition_by names {', '.join(map(repr, unknown))}, which the output "
                       f"does not keep from the corpus; partition by kept columns: "
                       f"{', '.join(kept) or '(none kept)'}")


def _read_schema(files, id_column, input_columns, kept) -> pa.Schema:
    wanted = {id_column, *input_columns.values(), *kept}
    types = _unified_types(files, wanted)
    for column in input_columns.values():
        stored_as_bytes = any(column in f.schema.names and is_bytes(f.schema.field(column).type)
                              for f in files)
        types[column] = pa.binary() if stored_as_bytes else pa.string()
    if id_column == GENERATED_ID:
        types[GENERATED_ID] = pa.string()
    names = list(dict.fromkeys([id_column, *input_columns.values(), *kept]))
    return pa.schema([pa.field(n, _plain(types[n])) for n in names])


def _unified_types(files, wanted: set[str]) -> dict[str, pa.DataType]:
    """One type per column across files: widened where they differ compatibly (int32 and int64
    give int64), refused naming the files where they do not (int64 in one, string in another)."""
    types: dict[str, pa.DataType] = {}
    first: dict[str, str] = {}
    for f in files:
        for field in f.schema:
            if field.name not in wanted:
                continue
            if field.name not in types:
                types[field.name], first[field.name] = _plain(field.type), f.name
                continue
            if _plain(field.type) == types[field.name]:  # the usual case: nothing to widen
                continue
            try:
                merged = pa.unify_schemas(
                    [pa.schema([pa.field(field.name, types[field.name])]),
                     pa.schema([pa.field(field.name, _plain(field.type))])],
                    promote_options="permissive")
            except (pa.ArrowTypeError, pa.ArrowInvalid):
                raise JobError(
                    f"column {field.name!r} is {types[field.name]} in {first[field.name]!r} but "
                    f"{field.type} in {f.name!r}; make the files agree, or leave the column out "
                    f"with keep_columns: [...]") from None
            types[field.name] = merged.field(field.name).type
    return types


def _plain(arrow_type: pa.DataType) -> pa.DataType:
    return arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type


def _check_output_location(spec) -> None:
    check_writable(spec.output)  # object storage: a probe object, written then deleted
    if ("://" in spec.output) != ("://" in spec.input):
        return
    if "://" in spec.output:
        out, inp = spec.output.rstrip("/"), spec.input.split("*")[0].rstrip("/")
    else:
        out, inp = os.path.realpath(spec.output), os.path.realpath(spec.input.split("*")[0])
    if out == inp or out.startswith(inp.rstrip(os.sep) + os.sep):
        raise JobError(f"output {spec.output!r} is inside the input {spec.input!r}; a rerun would "
                       f"read its own output. Choose an output folder outside the input.")
    if inp.startswith(out.rstrip(os.sep) + os.sep):
        raise JobError(f"input {spec.input!r} is inside the output {spec.output!r}; "
                       f"output_mode: overwrite could delete it. Choose another output folder.")


def _load_config(spec, model_ref):
    from transformers import AutoConfig

    local = os.path.isdir(model_ref)
    if os.path.isfile(model_ref):
        raise JobError(f"model {spec.model!r} is a file ({model_ref}), not a model folder: give "
                       f"the folder that holds config.json, the weights and the tokenizer "
                       f"(model.save_pretrained and tokenizer.save_pretrained write one); "
                       f"text-generation also takes a .gguf file")
    if not local and looks_like_path(model_ref):
        raise JobError(f"model folder {model_ref!r} does not exist (relative paths resolve "
                       f"against the job file's folder); check the path, or give a Hugging "
                       f"Face hub id such as org/name")
    if not local:
        _hub_reachable_or_refuse(spec)
    if local and not os.path.isfile(os.path.join(model_ref, "config.json")):
        found = ", ".join(sorted(os.listdir(model_ref))[:10]) or "nothing"
        raise JobError(f"model folder {model_ref!r} is not a transformers model folder: it has "
                       f"no config.json (found: {found}). Save one with "
                       f"model.save_pretrained(folder) and tokenizer.save_pretrained(folder).")
    if local and not spec.trust_remote_code:
        with open(os.path.join(model_ref, "config.json"), encoding="utf-8") as f:
            if "auto_map" in json.load(f):
                raise JobError(_REMOTE_CODE.format(model=spec.model))
    try:
        return AutoConfig.from_pretrained(model_ref, revision=spec.revision,
                                          trust_remote_code=spec.trust_remote_code)
    except Exception as e:  # noqa: BLE001 - loader errors vary; report them whole
        if "trust_remote_code" in str(e) and not spec.trust_remote_code:
            raise JobError(_REMOTE_CODE.format(model=spec.model)) from None
        where = "folder" if local else "hub id"
        hint = "" if local else (" If you meant a local folder, check the path (relative paths "
                                 "resolve against the job file's folder).")
        if not local and _hub_offline():
            raise JobError(f"model {spec.model!r} is not a local folder, and HF_HUB_OFFLINE=1 "
                           f"allows only models already in the local Hugging Face cache, which "
                           f"does not have it. Give a local model folder (relative paths "
                           f"resolve against the job file's folder), or unset HF_HUB_OFFLINE "
                           f"where the hub is reachable") from None
        raise JobError(f"model {where} {spec.model!r} could not be loaded: "
                       f"{type(e).__name__}: {e}.{hint}") from None


HUB_PROBE_TIMEOUT_S = 3.0


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE as the environment says now (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_reachable_or_refuse(spec) -> None:
    """A hub id when the hub cannot be reached fails in seconds, not after a minute of
    retries. With HF_HUB_OFFLINE=1 transformers answers from its cache at once itself."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if _hub_offline():
        return
    endpoint = urlparse(constants.ENDPOINT)
    host, port = endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError as e:
        raise JobError(f"model {spec.model!r} is not a local folder, and the Hugging Face hub "
                       f"({constants.ENDPOINT}) cannot be reached from here ({e}). Give a local "
                       f"model folder (relative paths resolve against the job file's folder), "
                       f"or run where the hub is reachable; HF_HUB_OFFLINE=1 uses models "
                       f"already in the local Hugging Face cache") from None


# A model folder needs one of these; without any, transformers 5 quietly builds an empty
# 5-token tokenizer that maps every word to [UNK].
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model",
                    "sentencepiece.bpe.model", "tokenizer.model", "source.spm")


def _load_tokenizer(spec, model_ref):
    if os.path.isdir(model_ref) and not any(
            os.path.isfile(os.path.join(model_ref, name)) for name in _TOKENIZER_FILES):
        raise JobError(f"model {spec.model!r}: its tokenizer could not be loaded: the folder has "
                       f"none of {', '.join(_TOKENIZER_FILES)}. Save it beside the weights with "
                       f"tokenizer.save_pretrained(folder).")
    try:
        return load_tokenizer(model_ref, spec.revision, spec.trust_remote_code)
    except Exception as e:  # noqa: BLE001
        raise JobError(f"model {spec.model!r}: its tokenizer could not be loaded: "
                       f"{type(e).__name__}: {e}. Save it beside the weights with "
                       f"tokenizer.save_pretrained(folder).") from None


def _check_weights(spec, model_ref) -> None:
    if not os.path.isdir(model_ref):
        return  # hub ids: the loader enforces use_safetensors itself
    names = os.listdir(model_ref)
    if any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in names):
        return
    pickled = [n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt"))]
    if pickled and not spec.allow_pickle:
        raise JobError(f"model folder {model_ref!r} has only pickle-based weights "
                       f"({', '.join(pickled)}), which can run arbitrary code when loaded. Convert "
                       f"them to safetensors, or set allow_pickle: true if you trust the source.")
    if not pickled:
        raise JobError(f"model folder {model_ref!r} has no weights (model.safetensors)")


def _load_weights(spec, task, model_ref) -> None:
    from corpusmill.operators.loading import load_model

    try:
        load_model(task.model_class(), model_ref, spec.revision, dtype=None, device="cpu",
                   trust_remote_code=spec.trust_remote_code, allow_pickle=spec.allow_pickle)
    except Exception as e:  # noqa: BLE001
        raise JobError(f"model {spec.model!r} could not be loaded: {type(e).__name__}: {e}") from None


def _max_length(spec, tokenizer, config) -> int:
    if spec.batching.max_length:
        return spec.batching.max_length
    limit = getattr(tokenizer, "model_max_length", None)
    if not limit or limit > 1_000_000:  # transformers' "no limit" sentinel is ~1e30
        limit = getattr(config, "max_position_embeddings", None) or 512
    return int(limit)
