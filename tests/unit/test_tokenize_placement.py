"""`resources.tokenize`: where texts are tokenized, settled against the placement."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from corpusmill.jobs.run import tokenize_in_actor
from corpusmill.spec import parse_spec


def plan(tokenize: str, num_gpus: float = 0, torch_threads: int = 1):
    return SimpleNamespace(spec=SimpleNamespace(resources=SimpleNamespace(tokenize=tokenize)),
                           num_gpus=num_gpus, torch_threads=torch_threads)


@pytest.mark.parametrize("setting,num_gpus,threads,in_actor", [
    ("auto", 0, 1, True),    # single-threaded CPU actors: the cores that would tokenize
    ("auto", 0, 2, False),   # a multi-threaded actor (onnxruntime's) would wait on it
    ("auto", 1, 1, False),   # beside a GPU, tasks overlap tokenizing with inference
    ("actor", 1, 1, True),
    ("tasks", 0, 1, False),
])
def test_auto_tokenizes_in_single_threaded_cpu_actors(setting, num_gpus, threads, in_actor):
    assert tokenize_in_actor(plan(setting, num_gpus, threads)) is in_actor


def test_an_unknown_setting_is_refused_naming_the_choices(tmp_path):
    with pytest.raises(Exception, match="tokenize.*'auto', 'actor' or 'tasks'"):
        parse_spec({"task": "text-classification", "model": "m", "input": "x.parquet",
                    "output": str(tmp_path), "resources": {"tokenize": "driver"}})
