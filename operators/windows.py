"""A block's token windows as flat arrays, and the vectorised steps over them: no per-row or
per-token Python between the tokenizer and the model.

Layout (`Windows`), for a block of `num_rows` rows, each with zero (an error row) or more
windows of token ids:
    ids          int32 (tokens,)       every window's ids, one after another
    type_ids     int32 (tokens,)       the same for token type ids, or None
    offsets      int64 (windows + 1,)  window w is ids[offsets[w]:offsets[w + 1]]
    row_offsets  int64 (rows + 1,)     row r's windows are row_offsets[r]:row_offsets[r + 1]
Between processes the same data travels as Arrow `list<list<int32>>` (a null row: no
windows), built from and read into these buffers without copying token by token.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np
import pyarrow as pa

WINDOWS_TYPE = pa.list_(pa.list_(pa.int32()))


@dataclass
class Windows:
    ids: np.ndarray
    type_ids: np.ndarray | None
    offsets: np.ndarray
    row_offsets: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per window, int64 (windows,)."""
        return np.diff(self.offsets)

    @property
    def num_windows(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_rows(self) -> int:
        return len(self.row_offsets) - 1

    @property
    def window_rows(self) -> np.ndarray:
        """The row of each window, int64 (windows,)."""
        return np.repeat(np.arange(self.num_rows), np.diff(self.row_offsets))

    @classmethod
    def from_lists(cls, windows: list, type_ids: list | None = None) -> "Windows":
        """From per row a list of windows (lists of ints), or None for a row without any."""
        per_row = [0 if w is None else len(w) for w in windows]
        flat = [ids for row in windows if row is not None for ids in row]
        lengths = np.fromiter(map(len, flat), dtype=np.int64, count=len(flat))
        offsets = np.zeros(len(flat) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        ids = np.fromiter(chain.from_iterable(flat), dtype=np.int32, count=total)
        types = None
        if type_ids is not None and any(t is not None for t in type_ids):
            flat_types = [t for row, w in zip(type_ids, windows) if w is not None
                          for t in row]
            types = np.fromiter(chain.from_iterable(flat_types), dtype=np.int32, count=total)
        row_offsets = np.zeros(len(windows) + 1, dtype=np.int64)
        np.cumsum(np.asarray(per_row, dtype=np.int64), out=row_offsets[1:])
        return cls(ids, types, offsets, row_offsets)

    @classmethod
    def from_arrow(cls, ids: pa.ChunkedArray | pa.Array,
                   type_ids: pa.ChunkedArray | pa.Array | None = None) -> "Windows":
        """From `list<list<int32>>` columns (null rows have no windows), reading the Arrow
        buffers in place: offsets are taken as Arrow keeps them (slices included)."""
        outer = _one_chunk(ids)
        row_offsets = outer.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        first, last = int(row_offsets[0]), int(row_offsets[-1])
        inner = outer.values
        offsets = inner.offsets.to_numpy(zero_copy_only=False)[first:last + 1].astype(np.int64)
        start, end = (int(offsets[0]), int(offsets[-1])) if len(offsets) else (0, 0)
        values = _ints(inner.values, start, end)
        types = None
        if type_ids is not None:
            outer_types = _one_chunk(type_ids)
            if outer_types.null_count < len(outer_types):
                typed = outer_types.offsets.to_numpy(zero_copy_only=False)
                inner_types = outer_types.values
                type_offsets = inner_types.offsets.to_numpy(zero_copy_only=False)
                low = int(type_offsets[int(typed[0])])
                types = _ints(inner_types.values, low, low + (end - start))
        return cls(values, types, offsets - start, row_offsets - first)

    def to_arrow(self, valid: np.ndarray | None = None) -> tuple[pa.Array, pa.Array]:
        """(ids, type ids) as `list<list<int32>>`: a row is null where `valid` is False (or
        where it has no window); type ids all null when there are none."""
        inner = pa.ListArray.from_arrays(pa.array(self.offsets.astype(np.int32)),
                                         pa.array(self.ids, pa.int32()))
        if valid is None:
            valid = np.diff(self.row_offsets) > 0
        row_offsets = pa.array(self.row_offsets.astype(np.int32))
        mask = pa.array(~np.asarray(valid, dtype=bool))
        ids = pa.ListArray.from_arrays(row_offsets, inner, mask=mask)
        if self.type_ids is None:
            types = pa.nulls(self.num_rows, WINDOWS_TYPE)
        else:
            inner_types = pa.ListArray.from_arrays(pa.array(self.offsets.astype(np.int32)),
                                                   pa.array(self.type_ids, pa.int32()))
            types = pa.ListArray.from_arrays(row_offsets, inner_types, mask=mask)
        return ids, types

    def pad(self, windows: np.ndarray, pad_id: int, side: str = "right") -> dict[str, np.ndarray]:
        """The model inputs of `windows` (indices), padded on `side` to the longest:
        `input_ids`, `attention_mask`, and `token_type_ids` when there are type ids; int64
        (batch, longest)."""
        if side not in ("right", "left"):
            raise ValueError(f"padding side must be 'right' or 'left', got {side!r}")
        starts = self.offsets[windows]
        lengths = self.offsets[windows + 1] - starts
        longest = int(lengths.max()) if len(lengths) else 0
        columns = np.arange(longest)
        if side == "right":
            mask = columns < lengths[:, None]                      # (batch, longest)
            source = starts[:, None] + columns
        else:
            shift = (longest - lengths)[:, None]
            mask = columns >= shift
            source = starts[:, None] + columns - shift
        picked = source[mask]
        input_ids = np.full((len(windows), longest), pad_id, dtype=np.int64)
        input_ids[mask] = self.ids[picked]
        arrays = {"input_ids": input_ids, "attention_mask": mask.astype(np.int64)}
        if self.type_ids is not None:
            types = np.zeros((len(windows), longest), dtype=np.int64)
            types[mask] = self.type_ids[picked]
            arrays["token_type_ids"] = types
        return arrays


def _one_chunk(column) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def _ints(values: pa.Array, start: int, end: int) -> np.ndarray:
    return values.slice(start, end - start).to_numpy(zero_copy_only=False).astype(
        np.int32, copy=False)
