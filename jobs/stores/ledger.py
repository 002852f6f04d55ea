"""Incremental runs: which input files earlier runs of a job have finished.

`.corpusmill/files.json` in the output folder maps each finished input file (its name relative
to the input root) to the size, modification time and content fingerprint it had when
processed (jobs/stores/corpus.py; ledgers of older versions have no fingerprint, and are compared by
size and time). A run with
`incremental: true` processes only files not in the ledger and records them once it completes;
a run that dies records nothing, so its rerun takes the same files again and Ray Data's
checkpoint skips the rows already committed. A file that changed after it was processed is
refused: incremental runs add new files, they do not redo old ones."""
from __future__ import annotations

import json

from corpusmill.errors import JobError
from corpusmill.jobs.stores.corpus import changed_files, stamp
from corpusmill.jobs.stores.output import LEDGER, output_filesystem
from corpusmill.operators.readers.files import CorpusFile



def read_ledger(output: str) -> dict[str, dict]:
    fs, root = output_filesystem(output)
    try:
        with fs.open_input_stream(f"{root}/{LEDGER}") as f:
            return json.loads(f.read())["files"]
    except FileNotFoundError:
        return {}


def new_files(files: list[CorpusFile], ledger: dict[str, dict]) -> list[CorpusFile]:
    """The files no earlier run finished. Raises JobError for a finished file that changed."""
    changed = changed_files(files, ledger)
    if changed:
        raise JobError(f"input file(s) {', '.join(map(repr, changed[:5]))} changed after an "
                       f"earlier incremental run processed them; incremental runs only add new "
                       f"files. Put changed data in new files, or rerun everything with "
                       f"output_mode: overwrite")
    return [f for f in files if f.name not in ledger]


def record_files(output: str, ledger: dict[str, dict], done: list[CorpusFile]) -> None:
    """Add `done` to the ledger (written whole, then renamed into place where possible)."""
    body = json.dumps({"files": {**ledger, **{f.name: stamp(f) for f in done}}},
                      indent=1, sort_keys=True).encode()
    fs, root = output_filesystem(output)
    fs.create_dir(f"{root}/{LEDGER}".rsplit("/", 1)[0], recursive=True)
    tmp = f"{root}/{LEDGER}.tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(body)
    try:
        fs.move(tmp, f"{root}/{LEDGER}")
    except (OSError, NotImplementedError):  # stores without rename: write in place
        with fs.open_output_stream(f"{root}/{LEDGER}") as f:
            f.write(body)
        fs.delete_file(tmp)
