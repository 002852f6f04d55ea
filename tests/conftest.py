"""Shared fixtures: tiny models built once per session, one local Ray per session, and helpers
to write corpora and job files; and the tiers: every test is marked by its folder and by what
it starts (see `pytest_collection_modifyitems`, and docs/contributing.md for the commands)."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests import tiny_models

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A job that stops making progress (a scheduling deadlock) fails in minutes, not Ray Data's
# default 30, so one hung test cannot eat CI's time.
os.environ.setdefault("RAY_DATA_EXECUTION_NO_PROGRESS_TIMEOUT_S", "240")


# tests/<folder>/ -> marker
FOLDER_MARKS = {"unit": "unit", "operators": "operators", "integration": "integration"}
# a fixture a test uses (directly or through other fixtures) -> what it starts
FIXTURE_MARKS = {"ray_session": ("ray",), "cluster": ("ray", "cluster"), "s3": ("s3",)}


def pytest_collection_modifyitems(config, items):
    """Mark each test by its folder and by the fixtures it uses. Tests that start Ray in a
    child process (the CLI as a subprocess) and `slow` ones are marked in their modules."""
    tests = Path(__file__).parent
    for item in items:
        parts = item.path.relative_to(tests).parts
        if parts[0] in FOLDER_MARKS:
            item.add_marker(FOLDER_MARKS[parts[0]])
        if parts[0] == "integration" and parts[-1].startswith("test_train_"):  # fine-tunes
            item.add_marker("train")
        for fixture in item.fixturenames:
            for mark in FIXTURE_MARKS.get(fixture, ()):
                item.add_marker(mark)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> SimpleNamespace:
    """Folders of tiny random models: classifiers (single-, multi-label, DistilBERT), an encoder."""
    root = tmp_path_factory.mktemp("models")
    return SimpleNamespace(
        classifier=tiny_models.build_bert_classifier(root / "bert-clf", num_labels=3),
        multi_label=tiny_models.build_bert_classifier(root / "bert-multi", num_labels=4,
                                                      multi_label=True, seed=3),
        distilbert=tiny_models.build_distilbert_classifier(root / "distilbert-clf"),
        encoder=tiny_models.build_bert_encoder(root / "bert-encoder"),
    )


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (start-up costs seconds on 2 cores)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 logging_level="WARNING", _system_config={"num_workers_soft_limit": 6})
    yield ray
    ray.shutdown()


@pytest.fixture
def graph_cache(tmp_path, monkeypatch) -> Path:
    """A fresh, empty model cache for this test (CORPUSMILL_CACHE): exported ONNX graphs and
    copied remote models land there, never in the user's cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CORPUSMILL_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def module_graph_cache(tmp_path_factory) -> Path:
    """One model cache (CORPUSMILL_CACHE) for the tests of a module: a graph exported for one
    test is reused by the next."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CORPUSMILL_CACHE", str(cache))
        yield cache


def write_parquet(path: Path, columns: dict, row_group_size: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def write_job(path: Path, **spec) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


def free_port() -> int:
    """A TCP port nobody listens on now (for test clusters and servers)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
