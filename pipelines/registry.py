"""Task name -> Task. A plain registry: refuses duplicates, lists the known names on a miss.

Every module of the `pipelines` package is imported on first use; a task module registers its
task when imported (helper modules such as `pooling` register nothing)."""
from __future__ import annotations

import importlib
import pkgutil

from corpusmill.pipelines.base import Task

_TASKS: dict[str, Task] = {}
_LOADED = False


class UnknownTask(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def register(task: Task) -> Task:
    if task.name in _TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    _TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    _load_builtin_tasks()
    try:
        return _TASKS[name]
    except KeyError:
        raise UnknownTask(
            f"unknown task {name!r}; available tasks: {', '.join(sorted(_TASKS))}"
        ) from None


def all_tasks() -> list[Task]:
    _load_builtin_tasks()
    return [_TASKS[name] for name in sorted(_TASKS)]


def _load_builtin_tasks() -> None:
    """Import every task module once. Lazily, so `pipelines.base` stays light; only once, as
    `get_task` is on the hot path (listing the package's folder cost ~100 us a call)."""
    global _LOADED
    if _LOADED:
        return
    from corpusmill import pipelines

    for module in pkgutil.iter_modules(pipelines.__path__):
        importlib.import_module(f"corpusmill.pipelines.{module.name}")
    _LOADED = True
