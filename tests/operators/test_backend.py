"""`resources.backend`: what is refused before any work, what `auto` picks (torch in float32,
with no export; onnxruntime's graph for int8) and falls back to (with one line saying why), the export cache (built once, keyed by what the graph bakes in, safe when
two builders race), int8's agreement report, and an onnxruntime actor that imports neither
torch nor transformers."""
from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
import threading

import pytest

from corpusmill.errors import JobError
from corpusmill.jobs.preflight import preflight
from corpusmill.operators import engines
from corpusmill.operators.engines import onnx_export
from corpusmill.operators.engines import check_backend, prepare_backend
from corpusmill.operators.engines.onnx_quantize import DEFAULT_SCHEME
from corpusmill.pipelines.registry import get_task
from corpusmill.spec import parse_spec
from tests.conftest import write_parquet
from tests.corpora import run_operators, varied_texts


pytestmark = pytest.mark.usefixtures("graph_cache")  # each test exports into its own cache


def job(tmp_path, model, task="text-classification", **resources):
    path = write_parquet(tmp_path / "in" / "corpus.parquet", {"text": varied_texts(60, seed=2)})
    spec = parse_spec({"task": task, "model": model, "input": str(path),
                       "output": str(tmp_path / "out"), "resources": resources,
                       "batching": {"max_tokens": 512, "window_rows": 32}})
    plan, corpus = preflight(spec)
    return dataclasses.replace(plan, torch_threads=1), corpus


def test_onnxruntime_is_refused_for_generation_before_any_work(tmp_path):
    spec = parse_spec({"task": "text-generation", "model": "some/model", "input": "x.parquet",
                       "output": str(tmp_path), "resources": {"backend": "onnxruntime"}})
    with pytest.raises(JobError, match="several forward passes.*use resources.backend: torch"):
        check_backend(spec)
    check_backend(spec.model_copy(update={"resources": spec.resources.model_copy(
        update={"backend": "auto"})}))  # auto: torch, nothing to refuse


def test_without_onnxruntime_explicit_is_refused_and_auto_says_why(tmp_path, tiny, monkeypatch,
                                                                   capsys):
    monkeypatch.setattr(engines, "onnxruntime_installed", lambda: False)
    with pytest.raises(JobError, match="onnxruntime is not installed.*pip install"):
        job(tmp_path / "a", tiny.classifier, backend="onnxruntime")
    plan, corpus = job(tmp_path / "b", tiny.classifier, dtype="int8")
    assert prepare_backend(plan, corpus, isolated=False).backend == "torch"
    assert capsys.readouterr().err.strip().splitlines() == [
        "corpusmill: backend auto: torch (onnxruntime is not installed (pip install "
        "'corpusmill[onnx]', or pip install onnxruntime onnx))"]


def test_auto_runs_torch_in_float32_and_exports_nothing(tmp_path, tiny, monkeypatch, capsys):
    """onnxruntime's float32 graph does not run faster than torch here (bench/RESULTS.md):
    `auto` never spends a run's seconds exporting one."""
    def refuse(request):
        raise AssertionError("auto exported a graph in float32")

    monkeypatch.setattr(onnx_export, "build", refuse)
    monkeypatch.setattr(onnx_export, "run_build", refuse)
    plan, corpus = job(tmp_path, tiny.classifier)
    chosen = prepare_backend(plan, corpus, isolated=False)
    assert chosen.backend == "torch" and chosen.graph is None
    assert capsys.readouterr().err == ""


def test_a_failed_export_falls_back_under_auto_and_stops_an_explicit_request(
        tmp_path, tiny, monkeypatch, capsys):
    def fail(request):
        raise onnx_export.ExportFailed("the exported graph's 'logits' differs from torch's")

    monkeypatch.setattr(onnx_export, "build", fail)
    plan, corpus = job(tmp_path, tiny.classifier, dtype="int8")
    assert prepare_backend(plan, corpus, isolated=False).backend == "torch"
    assert "backend auto: torch (the ONNX export failed: the exported graph's 'logits' " \
           "differs from torch's)" in capsys.readouterr().err
    explicit = dataclasses.replace(plan, spec=plan.spec.model_copy(update={
        "resources": plan.spec.resources.model_copy(update={"backend": "onnxruntime"})}))
    with pytest.raises(JobError, match="could not be exported to ONNX.*backend: torch"):
        prepare_backend(explicit, corpus, isolated=False)


def test_graph_is_built_once_and_keyed_by_the_options_it_bakes_in(tmp_path, tiny, capsys):
    plan, corpus = job(tmp_path, tiny.encoder, task="feature-extraction", backend="onnxruntime")
    first = prepare_backend(plan, corpus, isolated=False)
    assert first.backend == "onnxruntime" and "graph built once" in capsys.readouterr().err
    again = prepare_backend(plan, corpus, isolated=False)
    assert again.graph.folder == first.graph.folder and capsys.readouterr().err == ""
    task, folder = plan.task, onnx_export.graph_folder
    assert first.graph.folder == folder(tiny.encoder, None, task, task.Options(), "float32")
    assert folder(tiny.encoder, None, task, task.Options(pooling="cls"), "float32") != \
        first.graph.folder  # pooling is computed inside the graph
    classify = get_task("text-classification")  # top_k is applied after it
    assert folder(tiny.classifier, None, classify, classify.Options(top_k=1), "float32") == \
        folder(tiny.classifier, None, classify, classify.Options(top_k=2), "float32")


def test_two_builders_racing_for_one_graph_both_succeed(tmp_path):
    barrier = threading.Barrier(2)
    made, errors = [], []

    def make(work):
        barrier.wait()  # both have a work folder before either renames
        with open(os.path.join(work, onnx_export.GRAPH_FILE), "w") as f:
            f.write(threading.current_thread().name)
        made.append(work)

    def builder():
        try:
            onnx_export._publish("graph-x", make)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=builder, name=f"builder-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(made) == 2
    root = os.path.join(os.environ["CORPUSMILL_CACHE"], "onnx")
    assert os.listdir(root) == ["graph-x"]  # one graph, no work folder left behind
    assert onnx_export.is_built("graph-x")


def test_int8_reports_its_agreement_with_float32_at_the_start(tmp_path, tiny, capsys):
    plan, corpus = job(tmp_path, tiny.classifier, dtype="int8")
    int8 = prepare_backend(plan, corpus, isolated=False)
    assert int8.backend == "onnxruntime" and "-int8-" in int8.graph.folder
    err = capsys.readouterr().err
    assert f"int8 ({DEFAULT_SCHEME}) against float32 on " in err
    assert "logits: best entry agrees" in err
    rows = run_operators(int8, corpus).to_pylist()
    assert all(r["error"] is None for r in rows) and len({r["label"] for r in rows}) >= 2


def test_an_onnxruntime_actor_imports_neither_torch_nor_transformers(tmp_path, tiny):
    from corpusmill.operators.tokenize import tokenize_batch

    plan, corpus = job(tmp_path, tiny.classifier, backend="onnxruntime")
    plan = prepare_backend(plan, corpus, isolated=False)
    from corpusmill.operators.readers.read import CorpusDatasource

    source = CorpusDatasource(corpus.fs, corpus.files, plan.read_schema, None, rows_per_block=64)
    block = next(iter(next(iter(source.get_read_tasks(1))).read_fn()))
    payload = tmp_path / "payload.pkl"
    payload.write_bytes(pickle.dumps((plan, tokenize_batch(block, plan))))
    script = (
        "import pickle, sys\n"
        "from corpusmill.operators.infer import Infer\n"
        f"plan, table = pickle.loads(open({str(payload)!r}, 'rb').read())\n"
        "out = Infer(plan)(table)\n"
        "print(out.num_rows, out.column('error').null_count, 'torch' in sys.modules, "
        "'transformers' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["60", "60", "False", "False"]


def test_an_export_wrong_on_other_shapes_is_caught(tmp_path):
    """Longformer pads its input to a multiple of its attention window in Python, which the
    trace records as constants: the graph is right only for the traced shape. The check on
    batches of other shapes finds that, and the job is refused before any work."""
    from tests.tiny_question_answering import build_longformer_qa

    model = build_longformer_qa(tmp_path / "longformer")
    rows = [(" ".join(["what", "jumps"] * (1 + i % 3)) + "?",
             " ".join(["the quick brown fox jumps over the lazy dog"] * (1 + 4 * (i % 5))))
            for i in range(30)]
    path = write_parquet(tmp_path / "in" / "qa.parquet", {"question": [q for q, _ in rows],
                                                          "context": [c for _, c in rows]})
    spec = parse_spec({"task": "question-answering", "model": model, "input": str(path),
                       "output": str(tmp_path / "out"), "resources": {"backend": "onnxruntime"}})
    plan, corpus = preflight(spec)
    with pytest.raises(JobError, match="could not be exported to ONNX: the exported graph's "
                                       "'start_logits' differs from torch's on a batch of shape"):
        prepare_backend(dataclasses.replace(plan, torch_threads=1), corpus, isolated=False)
