"""corpusmill: batch NLP over whole corpora on Ray Data.

The repository's rooms install under this one namespace: `corpusmill.pipelines` (what a task
means), `corpusmill.operators` (how batches move inside Ray) and `corpusmill.jobs` (when and
where: runner, CLI, cluster submission). Pieces every room imports live here: `errors` (the
exceptions users act on) and `spec` (the validated job spec)."""
