"""Raw model outputs between the inference actor and postprocess, as typed Arrow columns.

A task whose raw outputs have, per window, a shape fixed by the model and options
(`Task.typed_outputs`: classification logits, embeddings, per-token logits) hands them over
as one column per output, with no pickling and no per-row Python on either side:

    _cm_window_lengths            list<int32>     tokens of each of the row's windows
    _cm_raw:<name>:w:<shape>      large_list<T>   per window an array of <shape> (e.g. `3`,
                                                  `5x2`, `` for a scalar), the row's windows
                                                  one after another, flattened
    _cm_raw:<name>:t:<shape>      large_list<T>   a token output: per window (tokens, <shape>)

(null for rows with an error). The shape travels in the column's name, which survives every
Arrow operation Ray Data applies between processes. Other tasks (generation: outputs whose
length depends on the data) keep one pickled list per row in `_cm_raw`.
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from corpusmill.operators.plan import RAW_PREFIX, WINDOW_LENGTHS
from corpusmill.operators.windows import Windows

WINDOW, TOKEN = "w", "t"


class OutputCollector:
    """Gathers a block's forward outputs, micro-batch by micro-batch, in window order.

    `add(index, outputs, mask)`: the raw outputs (name -> (batch, ...)) of the windows `index`,
    whose attention `mask` (batch, seq) marks each window's own positions."""

    def __init__(self, windows: Windows, token_outputs: frozenset[str]):
        self.windows = windows
        self.token_outputs = token_outputs
        self.fixed: dict[str, np.ndarray] = {}            # name -> (windows, *shape)
        self.token_parts: dict[str, list] = {}            # name -> [(index, (tokens, *shape))]
        self.token_shapes: dict[str, tuple] = {}

    def add(self, index: np.ndarray, outputs: dict[str, np.ndarray], mask: np.ndarray) -> None:
        for name, array in outputs.items():
            array = np.asarray(array)
            if name in self.token_outputs:
                own = array[:, :mask.shape[1]][mask]  # (tokens of these windows, *shape)
                self._check(name, self.token_shapes.setdefault(name, own.shape[1:]),
                            own.shape[1:])
                self.token_parts.setdefault(name, []).append((index, own))
                continue
            if name not in self.fixed:
                self.fixed[name] = np.zeros((self.windows.num_windows, *array.shape[1:]),
                                            dtype=array.dtype)
            self._check(name, self.fixed[name].shape[1:], array.shape[1:])
            self.fixed[name][index] = array

    @staticmethod
    def _check(name: str, expected: tuple, got: tuple) -> None:
        if expected != got:
            raise ValueError(f"raw output {name!r} changed shape between batches ({expected} "
                             f"then {got}); a task with typed_outputs must give each window an "
                             f"output of a shape fixed by the model and options")

    def _tokens(self, name: str) -> np.ndarray:
        """(all tokens of the block, *shape) in window order."""
        windows = self.windows
        lengths = windows.lengths
        out = np.zeros((len(windows.ids), *self.token_shapes[name]),
                       dtype=self.token_parts[name][0][1].dtype)
        for index, own in self.token_parts[name]:
            counts = lengths[index]
            starts = np.repeat(windows.offsets[index] - (np.cumsum(counts) - counts), counts)
            out[starts + np.arange(len(own))] = own
        return out

    def columns(self, valid: np.ndarray) -> dict[str, pa.Array]:
        """The typed columns for the block's rows (`valid`: rows without an error)."""
        windows = self.windows
        nulls = pa.array(~np.asarray(valid, dtype=bool))
        lengths = pa.array(windows.lengths.astype(np.int32))
        out = {WINDOW_LENGTHS: pa.ListArray.from_arrays(
            pa.array(windows.row_offsets.astype(np.int32)), lengths, mask=nulls)}
        for name, array in self.fixed.items():
            size = math.prod(array.shape[1:])
            offsets = windows.row_offsets * size
            out[column_name(name, WINDOW, array.shape[1:])] = _list(offsets, array, nulls)
        for name in self.token_parts:
            array = self._tokens(name)
            size = math.prod(array.shape[1:])
            offsets = windows.offsets[windows.row_offsets] * size
            out[column_name(name, TOKEN, array.shape[1:])] = _list(offsets, array, nulls)
        return out


def _list(offsets: np.ndarray, values: np.ndarray, nulls: pa.Array) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return pa.LargeListArray.from_arrays(pa.array(offsets.astype(np.int64)), flat, mask=nulls)


def column_name(name: str, kind: str, shape: tuple) -> str:
    return f"{RAW_PREFIX}{name}:{kind}:{'x'.join(str(d) for d in shape)}"


def parse_column_name(column: str) -> tuple[str, str, tuple[int, ...]]:
    """(output name, kind, per-window shape) of a typed raw column."""
    name, kind, shape = column[len(RAW_PREFIX):].rsplit(":", 2)
    return name, kind, tuple(int(d) for d in shape.split("x")) if shape else ()


def raw_columns(table: pa.Table) -> list[str]:
    return [name for name in table.column_names if name.startswith(RAW_PREFIX)]


class RawOutputs:
    """The typed raw outputs of some rows of a block (postprocess: the rows without an
    error), read back without copying: what `pipelines.base.Rows` takes as `raw`."""

    def __init__(self, table: pa.Table, rows: np.ndarray):
        self.rows = rows
        lengths = _one_chunk(table.column(WINDOW_LENGTHS))
        self.window_offsets, self.window_values = _offsets_values(lengths)
        self.columns = {}
        for column in raw_columns(table):
            name, kind, shape = parse_column_name(column)
            offsets, values = _offsets_values(_one_chunk(table.column(column)))
            self.columns[name] = (kind, shape, offsets, values)

    def __len__(self) -> int:
        return len(self.rows)

    def windows_per_row(self) -> np.ndarray:
        return (self.window_offsets[self.rows + 1] - self.window_offsets[self.rows])

    def stacked(self, name: str) -> np.ndarray | None:
        """(rows, *shape) of a per-window output when every row has one window, else None."""
        kind, shape, offsets, values = self.columns[name]
        if kind != WINDOW or not (self.windows_per_row() == 1).all():
            return None
        size = math.prod(shape)
        index = offsets[self.rows][:, None] + np.arange(size)
        return values[index].reshape(len(self.rows), *shape)

    def per_row(self) -> list[list[dict[str, np.ndarray]]]:
        """Per row, per window: output name -> array (token outputs cut to the window)."""
        out = []
        for row in self.rows:
            lengths = self.window_values[self.window_offsets[row]:self.window_offsets[row + 1]]
            windows = [{} for _ in lengths]
            for name, (kind, shape, offsets, values) in self.columns.items():
                size = math.prod(shape)
                at = int(offsets[row])
                for w, length in enumerate(lengths):
                    count = size * (int(length) if kind == TOKEN else 1)
                    chunk = values[at:at + count]
                    windows[w][name] = (chunk.reshape(int(length), *shape) if kind == TOKEN
                                        else chunk.reshape(shape))
                    at += count
            out.append(windows)
        return out


def _one_chunk(column) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def _offsets_values(array) -> tuple[np.ndarray, np.ndarray]:
    """A list array's absolute offsets (rows + 1) and the whole values buffer it indexes."""
    offsets = array.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    values = array.values.to_numpy(zero_copy_only=False)
    return offsets, values
