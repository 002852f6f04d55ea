"""Try a job on a sample before committing to the whole corpus: a seeded, length-stratified
sample of rows runs through the task's operators in this process (no Ray), and its throughput
estimates the full run's time. `corpusmill evaluate JOB.yaml --sample N` scores the sample
against the gold column.

Length strata: rows are binned by the character length of the task's first input (QA: the
question) into up to ten quantile bins, and each bin gives rows in proportion to its size, so the
sample's mix of short and long texts, which sets the cost per row, is the corpus's. With an
`evaluate` block only rows with a gold value are drawn."""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from corpusmill.operators.plan import JobPlan

STRATA = 10


def run_in_process(plan: JobPlan, corpus) -> pa.Table:
    """read -> tokenize -> infer -> postprocess in this process, as Ray would run them."""
    from corpusmill.operators.readers.read import CorpusDatasource

    source = CorpusDatasource(corpus.fs, corpus.files, plan.read_schema, plan.spec.id_column,
                              rows_per_block=plan.spec.batching.window_rows)
    return process_blocks(plan, source.blocks())


def process_blocks(plan: JobPlan, blocks, infer=None) -> pa.Table:
    """Output rows of blocks in the reader's column contract (tokenize, infer, postprocess;
    tokenized inside `infer` when the plan says so); `infer`: an already loaded `Infer`, else
    one is loaded."""
    from corpusmill.operators.infer import Infer
    from corpusmill.operators.postprocess import postprocess_batch
    from corpusmill.operators.tokenize import tokenize_batch

    infer = infer or Infer(plan)
    parts = [postprocess_batch(infer(block if plan.tokenize_in_actor else
                                     tokenize_batch(block, plan)), plan) for block in blocks]
    return pa.concat_tables(parts) if parts else plan.output_schema.empty_table()


@dataclass(frozen=True)
class SampleRun:
    table: pa.Table           # the sample's output rows
    rows: int                 # rows in the sample
    corpus_rows: int          # rows in the corpus (the candidates the sample was drawn from)
    load_seconds: float       # loading the model once
    seconds: float            # processing the sample (tokenize, infer, postprocess)
    torch_threads: int

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def estimate_lines(self, total_rows: int) -> list[str]:
        rate = self.rows_per_second
        full = total_rows / rate if rate else float("nan")
        return [
            f"sample: {self.rows} rows (length-stratified) processed in {self.seconds:.1f} s: "
            f"{rate:.1f} rows/s in one process with {self.torch_threads} torch thread(s); "
            f"model load {self.load_seconds:.1f} s",
            f"estimate for all {total_rows:,} rows: about {_duration(full)} of processing at "
            f"that rate, plus start-up (Ray, one model load per actor); on CPU several "
            f"single-threaded actors run about as fast as this process, on GPU faster",
        ]


def _duration(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "an unknown time"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def sample_rows(plan: JobPlan, corpus, n: int, seed: int = 0,
                gold: str | None = None) -> tuple[pa.Table, int]:
    """(up to `n` rows in the reader's column contract, rows they were drawn from): a seeded
    sample stratified by the length of the task's first input; with `gold`, only rows whose
    gold value is not null."""
    from corpusmill.operators.readers.files import read_group

    column = plan.input_columns[plan.task.input_columns[0]]
    where, lengths = [], []
    for f, corpus_file in enumerate(corpus.files):
        first = 0
        for group, count in enumerate(corpus_file.row_groups):
            wanted = [column] + ([gold] if gold and gold != column else [])
            table = read_group(corpus.fs, corpus_file, group,
                               [c for c in wanted if c in corpus_file.schema.names])
            keep = np.ones(table.num_rows, bool)
            if gold and gold in table.column_names:
                keep = pc.is_valid(table.column(gold)).to_numpy(zero_copy_only=False)
            text = table.column(column) if column in table.column_names else None
            length = (np.zeros(table.num_rows) if text is None else _lengths(text))
            rows = np.flatnonzero(keep)
            where.append(np.stack([np.full(len(rows), f), np.full(len(rows), group),
                                   rows, np.full(len(rows), first)], axis=1))
            lengths.append(length[rows])
            first += count
    where = np.concatenate(where) if where else np.zeros((0, 4), int)
    lengths = np.concatenate(lengths) if lengths else np.zeros(0)
    chosen = stratified_choice(lengths, n, seed)
    return _read_rows(plan, corpus, where[chosen]), len(lengths)


def _lengths(column: pa.ChunkedArray) -> np.ndarray:
    measure = pc.binary_length if pa.types.is_binary(column.type) or pa.types.is_large_binary(
        column.type) else pc.utf8_length
    return pc.fill_null(measure(column), 0).to_numpy(zero_copy_only=False).astype(float)


def stratified_choice(lengths: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of `n` of the rows (all when there are fewer), drawn without replacement from up
    to STRATA quantile bins of `lengths`, each bin in proportion to its size (largest
    remainders round), sorted."""
    total = len(lengths)
    if n >= total:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, STRATA + 1)))
    strata = np.clip(np.searchsorted(edges, lengths, side="right") - 1, 0, max(len(edges) - 2, 0))
    members = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    quota = np.array([len(m) for m in members]) * n / total
    take = np.floor(quota).astype(int)
    for s in np.argsort(-(quota - take), kind="stable")[: n - take.sum()]:
        take[s] += 1
    chosen = [rng.choice(m, size=k, replace=False) for m, k in zip(members, take) if k]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, int)


def _read_rows(plan: JobPlan, corpus, where: np.ndarray) -> pa.Table:
    """The rows at (file, row group, row in group, first row of group), as the reader gives
    them (ids, kept and partition columns)."""
    from corpusmill.operators.readers.files import read_row_group

    parts = []
    for (f, group, first) in sorted({(int(w[0]), int(w[1]), int(w[3])) for w in where}):
        rows = [int(w[2]) for w in where if w[0] == f and w[1] == group]
        corpus_file = corpus.files[f]
        table = pa.concat_tables(read_row_group(
            corpus.fs, corpus_file, group, first, plan.read_schema, plan.spec.id_column,
            corpus_file.row_groups[group]))
        parts.append(table.take(rows))
    return pa.concat_tables(parts) if parts else plan.read_schema.empty_table()


def run_sample(plan: JobPlan, corpus, n: int, seed: int = 0,
               gold: str | None = None) -> SampleRun:
    """Draw the sample, load the model once and process the sample, timing both."""
    from corpusmill.operators.infer import Infer

    threads = plan.spec.resources.torch_threads or os.cpu_count() or 1
    plan = dataclasses.replace(plan, torch_threads=threads)
    rows, candidates = sample_rows(plan, corpus, n, seed, gold)
    start = time.perf_counter()
    infer = Infer(plan)
    loaded = time.perf_counter()
    window = plan.spec.batching.window_rows
    blocks = [rows.slice(i, window) for i in range(0, rows.num_rows, window)]
    table = process_blocks(plan, blocks, infer)
    return SampleRun(table=table, rows=rows.num_rows, corpus_rows=candidates,
                     load_seconds=loaded - start, seconds=time.perf_counter() - loaded,
                     torch_threads=threads)
