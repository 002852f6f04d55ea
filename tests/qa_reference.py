"""transformers 4.57.6's question-answering pipeline (the last release that has it) as a reference
for our question-answering task, run in a venv of its own.

Two halves in one file, stdlib only at import time:
- `reference_python()` (run by the tests, in the project venv) builds that venv once per machine
  under ~/.cache/corpusmill/ (or $CORPUSMILL_CACHE): only transformers 4.57.6 and the
  tokenizers / huggingface-hub versions it accepts are installed there; torch, numpy and the
  other dependencies come from the project venv through a `.pth` file (installing an unpinned
  torch would pull gigabytes of CUDA wheels). The venv is built in a temporary folder and renamed
  into place when complete, so an interrupted build never leaves a half venv behind.
- `ReferenceRun(runs)` feeds it JSON in a subprocess: each run names a saved model folder,
  pipeline options and rows of {question, context}; `main()` (inside the venv) answers them with
  `pipeline("question-answering")`, one row at a time as a user would, and writes JSON back:
  per row the list of answers {answer, score, start, end}, best first, or {"error": "..."}.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

TRANSFORMERS = "transformers==4.57.6"
# The newest releases transformers 4.57.6 accepts (tokenizers<=0.23.0, huggingface-hub<1.0).
PINS = (TRANSFORMERS, "tokenizers==0.22.2", "huggingface-hub==0.36.2")
ENV_NAME = "qa-reference-" + "-".join(p.replace("==", "") for p in PINS)


def cache_root() -> Path:
    return Path(os.environ.get("CORPUSMILL_CACHE", Path.home() / ".cache" / "corpusmill"))


def reference_python() -> Path:
    """The reference venv's python, building the venv first when this machine has none."""
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    home = cache_root() / f"{ENV_NAME}-{tag}"
    python = home / "bin" / "python"
    if (home / "READY").exists():
        return python
    cache_root().mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{ENV_NAME}-", dir=cache_root()))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
        site = next((building / "lib").glob("python*/site-packages"))
        # after the venv's own site-packages: its transformers, tokenizers and hub win
        (site / "corpusmill-project-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        # --no-deps: everything else transformers imports is already in the project venv
        subprocess.run([str(building / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "--no-deps", "--disable-pip-version-check", *PINS], check=True)
        (building / "READY").write_text("\n".join(PINS) + "\n")
        try:
            building.rename(home)
        except OSError:  # another process finished first; use its venv
            if not (home / "READY").exists():
                raise
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    # a venv's scripts record its absolute path, but `python` itself is a symlink and works
    return python


class ReferenceRun:
    """The reference pipeline answering `runs` in a subprocess, started at once so that it works
    while the caller computes its own answers: [{model, options, rows: [{question, context}]}].
    `result()` gives per run, per row, the answers (list, best first) or {"error": message}."""

    def __init__(self, runs: list[dict], timeout: float = 900):
        python = reference_python()
        self.timeout = timeout
        self._tmp = tempfile.TemporaryDirectory()
        request = Path(self._tmp.name) / "in.json"
        self._response = Path(self._tmp.name) / "out.json"
        request.write_text(json.dumps(runs))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "PYTHONNOUSERSITE": "1"}
        env.pop("PYTHONPATH", None)
        self._process = subprocess.Popen(
            [str(python), __file__, str(request), str(self._response)], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._result = None

    def result(self) -> list[list]:
        if self._result is None:
            try:
                _, stderr = self._process.communicate(timeout=self.timeout)
            finally:
                if self._process.poll() is None:
                    self._process.kill()
            if self._process.returncode != 0:
                raise RuntimeError(f"reference pipeline failed:\n{stderr[-4000:]}")
            self._result = json.loads(self._response.read_text())
            self._tmp.cleanup()
        return self._result


def run_reference(runs: list[dict], timeout: float = 900) -> list[list]:
    return ReferenceRun(runs, timeout).result()


# ---- below runs inside the reference venv (transformers 4.57.6) ----

def load_tokenizer(folder: str):
    """The folder's tokenizer for transformers 4.57: transformers 5 saves `tokenizer_class:
    TokenizersBackend`, which 4.57 cannot read, so build the fast tokenizer from tokenizer.json
    and the saved settings."""
    from transformers import PreTrainedTokenizerFast

    config = json.loads((Path(folder) / "tokenizer_config.json").read_text())
    keep = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
            "mask_token", "model_max_length", "padding_side", "model_input_names")
    kwargs = {k: config[k] for k in keep if config.get(k) is not None}
    return PreTrainedTokenizerFast(tokenizer_file=str(Path(folder) / "tokenizer.json"), **kwargs)


def answer_rows(run: dict) -> list:
    import torch
    from transformers import AutoModelForQuestionAnswering, pipeline

    torch.set_num_threads(1)
    model = AutoModelForQuestionAnswering.from_pretrained(run["model"]).eval()
    qa = pipeline("question-answering", model=model, tokenizer=load_tokenizer(run["model"]),
                  device="cpu")
    results = []
    for row in run["rows"]:
        try:
            got = qa(question=row["question"], context=row["context"], **run["options"])
        except Exception as e:  # noqa: BLE001 - reported per row, compared by the test
            results.append({"error": f"{type(e).__name__}: {e}"})
            continue
        answers = got if isinstance(got, list) else [got]
        results.append([{"answer": a["answer"], "score": float(a["score"]),
                         "start": int(a["start"]), "end": int(a["end"])} for a in answers])
    return results


def main(request: str, response: str) -> None:
    import transformers

    assert transformers.__version__ == TRANSFORMERS.split("==")[1], transformers.__version__
    runs = json.loads(Path(request).read_text())
    Path(response).write_text(json.dumps([answer_rows(run) for run in runs]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
