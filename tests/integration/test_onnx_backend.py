"""A whole job through the CLI on onnxruntime (the graph exported in a child process on the
first run, read from the cache on the next) writes what the torch backend writes; the default
`auto` runs torch in float32 and exports nothing."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from corpusmill.jobs.cli import EXIT_OK, main
from tests.conftest import write_job, write_parquet
from tests.corpora import varied_texts

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = pytest.mark.slow


def test_onnxruntime_writes_what_torch_writes_and_auto_exports_nothing(
        tmp_path, tiny, ray_session, graph_cache, capsys):
    texts = [t for t in varied_texts(120, seed=9) if t.strip()]
    path = write_parquet(tmp_path / "in" / "corpus.parquet", {"text": texts})
    outputs = {}
    for name, backend in (("torch", "torch"), ("onnx", "onnxruntime"), ("onnx-again", "onnxruntime"),
                          ("auto", "auto")):
        job = write_job(tmp_path / f"{name}.yaml", task="text-classification",
                        model=tiny.classifier, input=str(path), output=str(tmp_path / name),
                        options={"top_k": 2}, batching={"max_tokens": 512, "window_rows": 40},
                        resources={"backend": backend, "concurrency": 2})
        assert main(["run", str(job)]) == EXIT_OK
        outputs[name] = {r["row_id"]: r for r in pq.read_table(tmp_path / name).to_pylist()}
        err = capsys.readouterr().err
        assert ("backend onnxruntime: graph built once" in err) == (name == "onnx"), err
    assert len(outputs["torch"]) == len(texts)
    for name in ("onnx", "onnx-again", "auto"):
        assert outputs[name].keys() == outputs["torch"].keys()
        for row_id, want in outputs["torch"].items():
            got = outputs[name][row_id]
            assert [p["label"] for p in got["labels"]] == [p["label"] for p in want["labels"]]
            assert [p["score"] for p in got["labels"]] == pytest.approx(
                [p["score"] for p in want["labels"]], abs=1e-4)
