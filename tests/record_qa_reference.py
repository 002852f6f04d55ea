"""Record transformers 4.57.6's question-answering pipeline answers for the QA parity cases into
tests/data/qa_reference_457.json. Run once, by hand, when the cases or the tiny models change:

    python tests/record_qa_reference.py [--venv DIR]

It needs the package index once: it builds a venv (default ~/.cache/corpusmill/qa-reference-...)
holding only transformers 4.57.6 and the tokenizers / huggingface-hub versions that release
accepts; torch, numpy and the rest come from the project venv through a `.pth` file (an
unpinned torch would pull gigabytes of CUDA wheels). The pipeline then answers every case in
that venv, one row at a time as a user would, on the same tiny models the tests build (their
fingerprints are recorded beside the answers).

Two halves in one file, stdlib only at import time: `record()` runs in the project venv;
`answer()` runs inside the reference venv (`--answer REQUEST RESPONSE`)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).parents[1]
# The newest releases transformers 4.57.6 accepts (tokenizers<=0.23.0, huggingface-hub<1.0).
PINS = ("transformers==4.57.6", "tokenizers==0.22.2", "huggingface-hub==0.36.2")
ENV_NAME = "qa-reference-" + "-".join(p.replace("==", "") for p in PINS)


def default_venv() -> Path:
    cache = Path(os.environ.get("CORPUSMILL_CACHE", Path.home() / ".cache" / "corpusmill"))
    return cache / f"{ENV_NAME}-py{sys.version_info.major}{sys.version_info.minor}"


def reference_python(home: Path) -> Path:
    """The reference venv's python, building the venv first when `home` has none."""
    if (home / "READY").exists():
        return home / "bin" / "python"
    home.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{home.name}-", dir=home.parent))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
        site = next((building / "lib").glob("python*/site-packages"))
        # after the venv's own site-packages: its transformers, tokenizers and hub win
        (site / "corpusmill-project-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        # --no-deps: everything else transformers imports is already in the project venv
        subprocess.run([str(building / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "--no-deps", "--disable-pip-version-check", *PINS], check=True)
        (building / "READY").write_text("\n".join(PINS) + "\n")
        building.rename(home)
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    return home / "bin" / "python"


def record(venv: Path) -> None:
    sys.path.insert(0, str(REPO))
    from tests.qa_reference import (RECORDED, RUNS, TRANSFORMERS, build_models, case_fingerprint,
                                    model_fingerprint)

    python = reference_python(venv)
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp) / "models")
        request, response = Path(tmp) / "in.json", Path(tmp) / "out.json"
        request.write_text(json.dumps([{"model": models[m], "options": options, "rows": rows}
                                       for m, options, rows in RUNS.values()]))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "PYTHONNOUSERSITE": "1"}
        env.pop("PYTHONPATH", None)
        subprocess.run([str(python), __file__, "--answer", str(request), str(response)],
                       env=env, check=True)
        answers = json.loads(response.read_text())
        recorded = {
            "transformers": TRANSFORMERS,
            "recorded_with": "python tests/record_qa_reference.py",
            "models": {name: model_fingerprint(folder) for name, folder in models.items()},
            "runs": {name: {"case": case_fingerprint(m, options, rows), "answers": got}
                     for (name, (m, options, rows)), got in zip(RUNS.items(), answers)},
        }
    RECORDED.parent.mkdir(parents=True, exist_ok=True)
    RECORDED.write_text(json.dumps(recorded, ensure_ascii=False, indent=0) + "\n",
                        encoding="utf-8")
    print(f"wrote {RECORDED} ({sum(len(a) for a in answers)} rows)")


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
    """Per row: the pipeline's answers [{answer, score, start, end}], best first, or
    {"error": message} when it refuses the row."""
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


def answer(request: str, response: str) -> None:
    import transformers

    if transformers.__version__ != PINS[0].split("==")[1]:
        sys.exit(f"the reference venv has transformers {transformers.__version__}")
    runs = json.loads(Path(request).read_text())
    Path(response).write_text(json.dumps([answer_rows(run) for run in runs]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=default_venv(),
                        help="where the transformers 4.57.6 venv is (built when missing)")
    parser.add_argument("--answer", nargs=2, metavar=("REQUEST", "RESPONSE"),
                        help=argparse.SUPPRESS)  # inside the reference venv
    args = parser.parse_args()
    if args.answer:
        answer(*args.answer)
    else:
        record(args.venv)


if __name__ == "__main__":
    main()
