"""corpusmill jobs: the job spec, its preflight checks, the runner and the command line."""
