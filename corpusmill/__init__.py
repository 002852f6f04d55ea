"""corpusmill: batch NLP over whole corpora on Ray Data.

The repository's rooms install under this one namespace: `corpusmill.pipelines` (what a task
means), `corpusmill.operators` (how batches move inside Ray) and `corpusmill.jobs` (when and
where: runner, CLI, cluster submission). Pieces every room imports live here: `errors` (the
exceptions users act on) and `spec` (the validated job spec).

The Python API (corpusmill/api.py) is exposed here lazily, so `import corpusmill` stays light
(no Ray, torch or transformers until a function runs):

    import corpusmill
    result = corpusmill.run("jobs/examples/topics_minilm.yaml")       # as `corpusmill run`
    df = corpusmill.annotate(df, task="zero-shot-classification", model=...)

In a source checkout (the repository's own layout: this folder beside `jobs/`, `operators/`
and `pipelines/` and a `pyproject.toml`), the rooms are imported from that checkout's folders,
whatever else is installed: the tests of a second checkout test its own code, and
`ray job submit --working-dir .` runs the code it uploaded."""
import os as _os

_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if all(_os.path.exists(_os.path.join(_checkout, name))
       for name in ("pyproject.toml", "jobs", "operators", "pipelines")):
    __path__.append(_checkout)  # noqa: F821 - a package's __path__


_API = ("run", "annotate", "RunResult", "JobFailed", "RunInterrupted", "PartialRun")
__all__ = [*_API, "JobError", "RowError", "ClusterUnreachable"]


def __getattr__(name):
    if name in _API:
        from corpusmill import api

        return getattr(api, name)
    if name in ("JobError", "RowError"):
        from corpusmill import errors

        return getattr(errors, name)
    if name == "ClusterUnreachable":
        from corpusmill.jobs.cluster.ray_session import ClusterUnreachable

        return ClusterUnreachable
    raise AttributeError(f"module 'corpusmill' has no attribute {name!r}")
