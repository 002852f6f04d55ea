"""The docs site's reference pages, written as Markdown from the code itself, so they cannot
drift from it: the job spec and the train spec from their pydantic models' field descriptions,
the tasks from the registry (options, output columns, gold options), the CLI from its argparse
parser. The site's build hook (docs/hooks/reference.py) calls `reference_pages()` on every
`mkdocs build`; nothing it returns is committed.

Each generator is a pure function of the code it reads: change a field's `description=` and
the next build shows the new text (tests/unit/test_docs_site.py checks it).
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

HELP_WIDTH = 90  # the CLI's help is rendered at a fixed width, whatever the terminal


def reference_pages() -> dict[str, str]:
    """Site path (under docs/) -> Markdown of every generated reference page."""
    from corpusmill import jobs
    from corpusmill.jobs.training.train_spec import TrainSpec
    from corpusmill.spec import JobSpec

    examples = Path(jobs.__file__).parent / "examples"  # the packaged example jobs
    return {
        "reference/job-spec.md": spec_reference(
            JobSpec, title="Job spec reference",
            intro="A job spec is a YAML file read by `corpusmill run`, `validate`, `evaluate` "
                  "and `submit`. Relative paths in it resolve against the file's own folder; "
                  "unknown keys are refused, naming the accepted ones; `--set key.sub=value` "
                  "overrides any key (values parse as YAML). The guide: "
                  "[Jobs and specs](../guides/jobs.md).",
            example=examples / "topics_minilm.yaml"),
        "reference/train-spec.md": spec_reference(
            TrainSpec, title="Train spec reference",
            intro="A train spec is a YAML file read by `corpusmill train`, in the job spec's "
                  "style: relative paths resolve against the file's folder, unknown keys are "
                  "refused, `--set key=value` overrides. The guide: "
                  "[Training](../guides/training.md).",
            example=examples / "train_topics_minilm.yaml"),
        "reference/tasks.md": tasks_reference(),
        "reference/cli.md": cli_reference(),
    }


# ------------------------------------------------------------------------------- specs

def spec_reference(model: type[BaseModel], *, title: str, intro: str = "",
                   example: Path | None = None) -> str:
    """A page with a table of `model`'s top-level keys, then one section per nested model (a
    section such as `batching`, or the {min, max} form of `resources.concurrency`) with its
    keys dotted (`batching.max_tokens`): type, default and the field's description."""
    lines = [f"# {title}", "", "<!-- generated from the code by corpusmill/docs_reference.py: "
             "do not edit -->", ""]
    if intro:
        lines += [intro, ""]
    for key, section in spec_sections(model):
        if key:
            lines += [f"## `{key}` {{ #{anchor(key)} }}", ""]
            if section.__doc__ and section.__doc__ != BaseModel.__doc__:
                lines += [" ".join(section.__doc__.split()), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for name, field in section.model_fields.items():
            dotted = f"{key}.{name}" if key else name
            meaning = cell(field.description or "")
            if nested_models(field.annotation):
                meaning += f" [Keys](#{anchor(_dotted(key, name, field.annotation))})."
            lines.append(f"| `{dotted}` | {type_text(field.annotation)} | "
                         f"{default_text(field)} | {meaning} |")
        lines.append("")
    if example is not None:
        lines += ["## Example", "", f"`jobs/examples/{example.name}`:", "", "```yaml",
                  example.read_text(encoding="utf-8").rstrip(), "```"]
    return "\n".join(lines).rstrip() + "\n"


def spec_sections(model: type[BaseModel], key: str = "") -> list[tuple[str, type[BaseModel]]]:
    """(dotted key, model) for `model` itself ("") and every model nested in it, in order."""
    sections = [(key, model)]
    for name, field in model.model_fields.items():
        for nested in nested_models(field.annotation):
            sections += spec_sections(nested, _dotted(key, name, field.annotation))
    return sections


def _dotted(key: str, name: str, annotation: Any) -> str:
    """The dotted key of a nested section; a mapping of sections by name (`tasks`) reads
    `tasks.NAME`."""
    dotted = f"{key}.{name}" if key else name
    return f"{dotted}.NAME" if _named_sections(annotation) else dotted


def _named_sections(annotation: Any) -> bool:
    """`dict[str, Model]` (or that or None)."""
    candidates = [annotation, *typing.get_args(annotation)]
    return any(typing.get_origin(a) is dict and nested_models(typing.get_args(a)[-1])
               for a in candidates)


def anchor(key: str) -> str:
    """The heading id of a section's key: `resources.concurrency` -> `resources-concurrency`."""
    return key.replace(".", "-").replace("_", "-")


def spec_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, FieldInfo]]:
    """(dotted key, field) for every field of `model`, followed by the fields of each nested
    model it may hold (a section such as `batching`, or one arm of a union such as
    `resources.concurrency`'s {min, max} range)."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        rows.append((key, field))
        for nested in nested_models(field.annotation):
            rows += spec_fields(nested, f"{_dotted('', key, field.annotation)}.")
    return rows


def nested_models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds directly (`X`, `X | None`, `int | X`), or as
    the values of a mapping (`dict[str, X] | None`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) is dict:
        return nested_models(typing.get_args(annotation)[-1])
    return [model for arg in typing.get_args(annotation)
            for model in ([arg] if isinstance(arg, type) and issubclass(arg, BaseModel)
                          else nested_models(arg) if typing.get_origin(arg) is dict else [])]


def type_text(annotation: Any) -> str:
    """An annotation as a reader of a YAML file thinks of it: `int`, `auto` | `float`,
    `list[str]`, a section."""
    if annotation is type(None):
        return "`null`"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{value}`" for value in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(type_text(arg) for arg in args)
    if origin is not None:
        inner = ", ".join(_plain(arg) for arg in args)
        return f"`{_plain(origin)}[{inner}]`"
    return f"`{_plain(annotation)}`"


def _plain(annotation: Any) -> str:
    if annotation is Any:
        return "any"
    names = {str: "str", int: "int", float: "float", bool: "bool", list: "list", dict: "dict",
             tuple: "tuple"}
    if annotation in names:
        return names[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(str(value) for value in args)
    if origin is not None:
        return f"{_plain(origin)}[{', '.join(_plain(arg) for arg in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def default_text(field: FieldInfo) -> str:
    """`required`, or the default as it would be written in YAML; a section's default is its
    keys' defaults (listed below it)."""
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        if _constructible(type(value)) and type(value)() == value:
            return "see below"  # the section's own defaults, listed under it
        return f"`{cell(_yaml(value.model_dump(mode='json', exclude_none=True)))}`"
    from pydantic_core import to_jsonable_python

    # a list or mapping of models (the kube block's tolerations) as the YAML that gives it
    return f"`{cell(_yaml(to_jsonable_python(value, exclude_none=True)))}`"


def _constructible(model: type[BaseModel]) -> bool:
    try:
        model()
    except Exception:  # noqa: BLE001 - a model with required keys or a cross-field rule
        return False
    return True


def _yaml(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1 << 16)
    return text.strip().removesuffix("...").strip()


def cell(text: str) -> str:
    """Text safe inside one Markdown table cell: on one line, `|` escaped, and `<` outside code
    spans written as an entity (so '<file>:<row>' is text, not an HTML tag)."""
    parts = " ".join(str(text).split()).replace("|", "\\|").split("`")
    return "`".join(part if inside else part.replace("<", "&lt;")
                    for part, inside in zip(parts, itertools.cycle((False, True))))


# ------------------------------------------------------------------------------- tasks

def tasks_reference() -> str:
    """One section per task of the registry: inputs, options, output columns, what `evaluate`
    takes, and which backends run it; the same facts `corpusmill tasks` prints."""
    from corpusmill.pipelines.base import EvaluateOptions
    from corpusmill.pipelines.registry import all_tasks

    tasks = all_tasks()
    lines = ["# Tasks reference", "", "<!-- generated from the code by "
             "corpusmill/docs_reference.py: do not edit -->", "",
             "Every task the registry holds, with the options a job's `options:` takes, the "
             "output columns it writes (beside the id column, the kept columns and `error`) "
             "and the keys of its `evaluate:` block. `corpusmill tasks` prints the same. What "
             "the outputs mean, and how they compare with transformers: "
             "[Tasks](../guides/tasks.md).", "",
             "| task | inputs | backends | metric against gold |", "|---|---|---|---|"]
    for task in tasks:
        backends = "torch, onnxruntime" if task.has_graph() else "torch"
        lines.append(f"| [`{task.name}`](#{task.name}) | "
                     f"{', '.join(f'`{c}`' for c in task.input_columns)} | {backends} | "
                     f"{'yes' if task.Evaluate is not None else 'no'} |")
    for task in tasks:
        lines += ["", f"## {task.name}", "", cell(task.summary), "",
                  f"**Inputs:** {', '.join(f'`{c}`' for c in task.input_columns)} "
                  f"(map them to corpus columns with `columns:`).", ""]
        lines += _options_table("Options", task.Options.model_fields)
        lines += ["**Output columns:**", "", "| column | Arrow type |", "|---|---|"]
        lines += [f"| `{f.name}` | `{cell(str(f.type))}` |" for f in task.output_fields()]
        lines.append("")
        if task.Evaluate is None:
            lines += ["**Evaluate:** no metric against gold (an `evaluate` block is refused).", ""]
        else:
            lines += _options_table("Evaluate keys", task.Evaluate.model_fields,
                                    inherited=EvaluateOptions.model_fields)
    return "\n".join(lines).rstrip() + "\n"


def _options_table(title: str, fields: dict[str, FieldInfo],
                   inherited: dict[str, FieldInfo] | None = None) -> list[str]:
    if not fields:
        return [f"**{title}:** none.", ""]
    lines = [f"**{title}:**", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in fields.items():
        lines.append(f"| `{name}` | {type_text(field.annotation)} | {default_text(field)} | "
                     f"{cell(field.description or '')} |")
    return lines + [""]


# --------------------------------------------------------------------------------- CLI

def cli_reference() -> str:
    """`corpusmill --help` and every subcommand's `--help`, at a fixed width."""
    from corpusmill.jobs import cli

    parser = cli.build_parser()
    lines = ["# Command line reference", "", "<!-- generated from the code by "
             "corpusmill/docs_reference.py: do not edit -->", "",
             "The help of `corpusmill` and of each of its commands, exactly as the installed "
             "version prints it. Exit codes: [Failures and exit codes]"
             "(../guides/failures.md#exit-codes).", "",
             "## corpusmill", "", "```text", help_text(parser).rstrip(), "```"]
    for name, command in subcommands(parser).items():
        lines += ["", f"## corpusmill {name}", "", "```text", help_text(command).rstrip(),
                  "```"]
    return "\n".join(lines) + "\n"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Command name -> its parser. argparse offers no public accessor: its subparsers action
    (`_SubParsersAction`, stable since Python 3.2) holds them in `choices`."""
    for action in parser._actions:  # noqa: SLF001 - see the docstring
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return dict(action.choices)
    return {}


def help_text(parser: argparse.ArgumentParser) -> str:
    """`parser`'s help at HELP_WIDTH columns, without colour."""
    parser.formatter_class = _fixed_width
    with _no_colour():
        return parser.format_help()


def _fixed_width(prog: str) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(prog, width=HELP_WIDTH)


@contextlib.contextmanager
def _no_colour():
    """Python 3.14's argparse colours help when it thinks a terminal reads it."""
    saved = os.environ.get("NO_COLOR")
    os.environ["NO_COLOR"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("NO_COLOR", None)
        else:
            os.environ["NO_COLOR"] = saved
