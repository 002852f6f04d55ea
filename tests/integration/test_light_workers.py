"""Tokenize and postprocess tasks run in worker processes without torch (about 170 MB less
each), while the inference actors keep it; the job's plan travels to both."""
from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from corpusmill.operators import light_workers


def _probe(model_ref: str) -> tuple[bool, list[int]]:
    import sys as _sys

    from corpusmill.operators.loading import load_tokenizer

    ids = load_tokenizer(model_ref, None, False)("a short text")["input_ids"]
    return _sys.modules.get("torch") is not None, ids


@pytest.mark.slow
def test_task_workers_tokenize_without_torch_and_actors_keep_it(ray_session, tiny):
    import ray

    probe = ray.remote(num_cpus=0.1)(_probe)
    light, ids = ray.get(probe.options(runtime_env=light_workers.runtime_env())
                         .remote(tiny.classifier))
    default, same_ids = ray.get(probe.remote(tiny.classifier))
    assert (light, default) == (False, True)
    assert ids == same_ids


def test_a_plan_model_config_unpickles_without_torch(tiny):
    from transformers import AutoConfig

    from corpusmill.operators.plan import LazyConfig

    config = AutoConfig.from_pretrained(tiny.classifier)
    blob = pickle.dumps(LazyConfig(config))
    code = ("import pickle, sys; sys.modules['torch'] = None; "
            "config = pickle.loads(sys.stdin.buffer.read()); "
            "print(config.num_labels, config.id2label[0], config.dtype)")
    out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True,
                         check=True, env={"TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
                                          "PATH": "/usr/bin:/bin"})
    assert out.stdout.decode().split() == [str(config.num_labels), config.id2label[0],
                                           str(config.dtype).removeprefix("torch.")]
