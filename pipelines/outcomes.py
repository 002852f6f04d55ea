"""Pieces several tasks share to describe their outputs in a run report and to read gold values:
gold column types, references as lists, and generated-text summaries. Registers no task."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from corpusmill.pipelines.base import INPUT_TRUNCATED, Panel


def is_string(arrow_type: pa.DataType) -> bool:
    if pat.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return pat.is_string(arrow_type) or pat.is_large_string(arrow_type)


def is_string_list(arrow_type: pa.DataType) -> bool:
    return ((pat.is_list(arrow_type) or pat.is_large_list(arrow_type))
            and is_string(arrow_type.value_type))


def require_string_gold(gold: pa.DataType, task: str, lists: bool = False) -> None:
    """Refuse a gold column that is not text (or, with `lists`, a list of texts)."""
    if is_string(gold) or (lists and is_string_list(gold)):
        return
    accepted = "a string, or a list of strings (several acceptable answers)" if lists else (
        "a string (the expected label)")
    raise ValueError(f"{task} scores a gold column of {accepted}; this one is {gold}")


def as_references(value) -> list[str]:
    """A gold value that is one string or a list of acceptable strings, as a list."""
    return [value] if isinstance(value, str) else list(value)


def generated_text_facts(outputs: pa.Table, column: str) -> dict[str, list]:
    """Length in words of each generated text, and whether its input was truncated."""
    texts = outputs.column(column)
    facts = {"words": pc.list_value_length(pc.utf8_split_whitespace(texts)).to_pylist()}
    if INPUT_TRUNCATED in outputs.column_names:
        facts["truncated"] = outputs.column(INPUT_TRUNCATED).to_pylist()
    return facts


def generated_text_panels(what: str) -> list[Panel]:
    return [Panel("histogram", "words", f"{what} length (words)"),
            Panel("share", "truncated", "Inputs cut to the model's window")]
