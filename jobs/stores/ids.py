"""Row ids over a whole corpus or output folder without holding them in the driver.

What is computed over every id (uniqueness before a run, duplicates after it, an incremental
run's rows among the output) streams through `IdPartitions`: each id is reduced to a 64-bit
hash (`id_hash`, polars' vectorised hash), and (hash, source file, flags) rows are spilled
to one of P partition files on local disk by the hash, P chosen so that a partition holds
about PARTITION_ROWS rows. Each question is then answered one partition at a time (a sort of its hashes, numpy),
so the driver's memory is bounded by one read batch plus one partition, whatever the
corpus's size, and only counts and a few examples come back.

Equal ids always land in the same partition with the same hash, so no duplicate is missed.
Two different ids with the same 64-bit hash (about n^2 / 2^65 expected pairs: 1e-5 at 20
million ids) would look like a duplicate: `find_duplicates` confirms each example by its
value in a second pass over the files, and reports only ids seen more than once. Membership
counts (`count_in`: an incremental run's own rows) are by hash alone.

Spill files go to CORPUSMILL_SPILL_DIR or the system's temporary folder, and are removed
when the object is closed or collected."""
from __future__ import annotations

import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

PARTITION_ROWS = 1 << 20        # rows per partition: 12-16 MB of hashes, sources, flags
READ_BATCH_ROWS = 1 << 16       # ids read, hashed and spilled at a time
CONFIRM_LIMIT = 1000            # duplicated hashes whose values a second pass looks up
SPILL_DIR_ENV = "CORPUSMILL_SPILL_DIR"


def id_hash(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of each value (uint64, one per row; polars' vectorised hash, seed 0),
    equal for equal values of one kind in this process: integers, dates and times hash
    their int64 value, strings and binaries their bytes, other types their text form."""
    import polars as pl

    kind = values.type
    if pa.types.is_dictionary(kind):
        values, kind = values.cast(kind.value_type), kind.value_type
    if pa.types.is_integer(kind) or pa.types.is_temporal(kind) or pa.types.is_boolean(kind):
        values = values.cast(pa.int64())
    elif (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
          or pa.types.is_binary_view(kind) or pa.types.is_fixed_size_binary(kind)):
        values = values.cast(pa.large_binary())
    else:
        values = values.cast(pa.large_string())
    if len(values) == 0:
        return np.empty(0, np.uint64)
    return pl.Series(values).hash(seed=0).to_numpy()


def partitions_for(rows: int) -> int:
    return max(1, -(-rows // PARTITION_ROWS))


# The spilled columns' types. Between them and numpy, `_arrow` and `_numpy` share the memory
# instead of calling `pa.array` / `to_numpy`, which import pandas the first time (to ask
# whether an array is one of its categoricals): ~0.2 s of a `validate` whose driver has no
# other use for pandas.
_NUMPY_TYPES = {pa.uint64(): np.dtype(np.uint64), pa.int32(): np.dtype(np.int32),
                pa.int8(): np.dtype(np.int8)}


def _arrow(values: np.ndarray) -> pa.Array:
    """A 1-d numpy array of one of `_NUMPY_TYPES` as an Arrow array over the same memory."""
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values),
                                 [None, pa.py_buffer(values)])


def _numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A spilled column (no nulls, one of `_NUMPY_TYPES`) as one numpy array (read-only)."""
    dtype = _NUMPY_TYPES[column.type]
    parts = [np.frombuffer(chunk.buffers()[1], dtype, count=len(chunk),
                           offset=chunk.offset * dtype.itemsize)
             for chunk in column.chunks if len(chunk)]
    if not parts:
        return np.empty(0, dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


class IdPartitions:
    """Hashes of ids, with the index of the file each came from and optional per-row 0/1
    flags (`flags`: names), spilled into `partitions` files by hash. Thread-safe `add`."""

    def __init__(self, partitions: int, flags: tuple[str, ...] = ()):
        self.partitions = max(1, partitions)
        self.flags = tuple(flags)
        self.rows = 0
        self._schema = pa.schema([("hash", pa.uint64()), ("source", pa.int32())]
                                 + [(name, pa.int8()) for name in self.flags])
        self._dir = tempfile.TemporaryDirectory(prefix="corpusmill-ids-",
                                                dir=os.environ.get(SPILL_DIR_ENV) or None)
        self._writers = [None] * self.partitions
        self._lock = threading.Lock()
        self._closed_for_writing = False

    def _path(self, part: int) -> str:
        return os.path.join(self._dir.name, f"{part}.arrow")

    def add(self, hashes: np.ndarray, source: int | np.ndarray,
            flags: dict[str, np.ndarray] | None = None):
        """Spill one batch of ids (their `id_hash`) of file `source`, or of several files
        (`source`: the file of each id, one per hash)."""
        if not len(hashes):
            return
        part = (hashes % np.uint64(self.partitions)).astype(np.int64)
        order = np.argsort(part, kind="stable") if self.partitions > 1 else None
        sources = (np.full(len(hashes), source, np.int32) if np.ndim(source) == 0
                   else np.asarray(source, np.int32))
        if len(sources) != len(hashes):
            raise ValueError(f"{len(hashes)} hashes but {len(sources)} sources")
        columns = [hashes, sources]
        columns += [np.asarray((flags or {})[name], np.int8) for name in self.flags]
        if order is not None:
            columns = [c[order] for c in columns]
            bounds = np.searchsorted(part[order], np.arange(self.partitions + 1))
        else:
            bounds = np.array([0, len(hashes)])
        batch = pa.record_batch([_arrow(c) for c in columns], schema=self._schema)
        with self._lock:
            self.rows += len(hashes)
            for p in range(self.partitions):
                start, end = int(bounds[p]), int(bounds[p + 1])
                if end > start:
                    if self._writers[p] is None:
                        self._writers[p] = pa.ipc.new_stream(self._path(p), self._schema)
                    self._writers[p].write_batch(batch.slice(start, end - start))

    def _finish_writing(self) -> None:
        with self._lock:
            for writer in self._writers:
                if writer is not None:
                    writer.close()
            self._writers = [None] * self.partitions
            self._closed_for_writing = True

    def partition(self, part: int) -> pa.Table:
        """One partition's rows (hash, source, flags...)."""
        if not self._closed_for_writing:
            self._finish_writing()
        path = self._path(part)
        if not os.path.exists(path):
            return self._schema.empty_table()
        with pa.memory_map(path) as source:
            return pa.ipc.open_stream(source).read_all()

    def repeated(self, skip_sources: set[int] = frozenset()) -> tuple[int, np.ndarray]:
        """(number of hashes seen more than once, up to CONFIRM_LIMIT of them), leaving out the
        rows of `skip_sources`."""
        total, examples = 0, []
        for part in range(self.partitions):
            table = self.partition(part)
            hashes = _numpy(table.column("hash"))
            if skip_sources:
                keep = ~np.isin(_numpy(table.column("source")), list(skip_sources))
                hashes = hashes[keep]
            hashes = np.sort(hashes)
            twice = hashes[1:][hashes[1:] == hashes[:-1]]
            unique_twice = np.unique(twice)
            total += len(unique_twice)
            if sum(map(len, examples)) < CONFIRM_LIMIT:
                examples.append(unique_twice[:CONFIRM_LIMIT - sum(map(len, examples))])
        found = np.concatenate(examples) if examples else np.empty(0, np.uint64)
        return total, found

    def count_in(self, scope: "IdPartitions | None") -> dict[str, int]:
        """Rows (and the sum of each flag) whose hash is in `scope` (None: every row). The two
        must have as many partitions."""
        totals = {"rows": 0, **{name: 0 for name in self.flags}}
        for part in range(self.partitions):
            table = self.partition(part)
            if scope is not None:
                if scope.partitions != self.partitions:
                    raise ValueError("scope and ids partitioned differently")
                inside = np.isin(_numpy(table.column("hash")),
                                 _numpy(scope.partition(part).column("hash")))
                table = table.filter(pa.array(inside))
            totals["rows"] += table.num_rows
            for name in self.flags:
                totals[name] += int(_numpy(table.column(name)).sum(dtype=np.int64))
        return totals

    def close(self) -> None:
        self._finish_writing()
        self._dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SpillBuffer:
    """Ids of one or more files gathered for one `id_hash` call and one `IdPartitions.add`
    per `rows` ids: a corpus of many small files pays hashing's and spilling's cost per call
    once per batch, not once per file. Holds at most about `rows` ids; `flush` (or leaving
    the `with` block) spills what is left. One per thread."""

    def __init__(self, ids: IdPartitions, rows: int | None = None):
        self.ids, self.rows = ids, rows or READ_BATCH_ROWS
        self._values: list[pa.Array] = []
        self._sources: list[int] = []
        self._held = 0

    def add(self, values: pa.Array, source: int) -> None:
        """Ids of file `source` (all of one type), spilled with the next batch."""
        if len(values):
            self._values.append(values)
            self._sources.append(source)
            self._held += len(values)
        if self._held >= self.rows:
            self.flush()

    def flush(self) -> None:
        if not self._values:
            return
        lengths = [len(v) for v in self._values]
        values = self._values[0] if len(self._values) == 1 else pa.chunked_array(self._values)
        self.ids.add(id_hash(values), np.repeat(np.asarray(self._sources, np.int32), lengths))
        self._values, self._sources, self._held = [], [], 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.flush()


GROUP_FILES = 256  # most files one thread reads the ids of before taking more


def file_groups(count: int, workers: int) -> list[range]:
    """Indexes 0..count-1 in consecutive groups, one group per task of a pool of `workers`
    threads: as many groups as workers where there are enough files (each of them waits on
    its own store requests), at most GROUP_FILES files each."""
    groups = min(count, max(workers, -(-count // GROUP_FILES)))
    bounds = [count * k // groups for k in range(groups + 1)] if groups else [0]
    return [range(start, end) for start, end in zip(bounds, bounds[1:])]


@dataclass
class Duplicates:
    """What `find_duplicates` found: how many ids occur more than once, and a few of them
    with their count and the sources (file indexes) that hold them, in order of first
    occurrence."""
    count: int = 0
    examples: list[tuple[object, int, list[int]]] = field(default_factory=list)


def find_duplicates(ids: IdPartitions, read_again, sources: int, skip: set[int] = frozenset(),
                    shown: int = 5, threads: int = 4) -> Duplicates:
    """Duplicated ids among those spilled into `ids`. `read_again(source)` yields the id
    arrays of one source again, in order: only when some hash repeats, to confirm it by value
    and name where it occurs (collisions of different ids are dropped)."""
    total, candidates = ids.repeated(skip)
    if not total:
        return Duplicates()
    candidates = np.sort(candidates)
    found: dict[object, list] = {}      # value -> [count, first (source, row), sources]
    lock = threading.Lock()

    def look(source: int) -> None:
        row = 0
        for values in read_again(source):
            mask = np.isin(id_hash(values), candidates)
            if mask.any():
                where = np.flatnonzero(mask)
                picked = values.filter(pa.array(mask)).to_pylist()
                with lock:
                    for value, index in zip(picked, where):
                        sighting = (source, row + int(index))
                        entry = found.setdefault(value, [0, sighting, []])
                        entry[0] += 1
                        entry[1] = min(entry[1], sighting)
                        if source not in entry[2]:
                            entry[2].append(source)
            row += len(values)

    wanted = [s for s in range(sources) if s not in skip]
    with ThreadPoolExecutor(max(1, min(threads, len(wanted) or 1))) as pool:
        list(pool.map(look, wanted))
    confirmed = sorted(((entry[1], value, entry[0], sorted(entry[2]))
                        for value, entry in found.items() if entry[0] > 1),
                       key=lambda item: item[0])
    collisions = len(candidates) - len(confirmed)  # hashes whose values all differed
    return Duplicates(count=total - collisions,
                      examples=[(value, count, where)
                                for _, value, count, where in confirmed[:shown]])
