"""Build the tiny RANDOM encoder-decoder models the seq2seq example jobs use: T5 (with t5-small's
`task_specific_params`: `summarize: ` and `translate English to German: ` prefixes), BART and
Marian, 2 layers of width 32, tokenizers trained offline on the sample corpus. Their outputs are
word salad: no summarisation or translation weights ship on PyPI, so these show the plumbing.
Point the jobs' `model:` at a real checkpoint folder or hub id (t5-small, facebook/bart-large-cnn,
Helsinki-NLP/opus-mt-en-de) for real summaries and translations.

    python jobs/examples/make_tiny_seq2seq.py out/models
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests/

from tests.tiny_seq2seq import build_bart, build_marian, build_t5  # noqa: E402


def main(folder: str) -> None:
    root = Path(folder)
    for name, build in (("tiny-t5", build_t5), ("tiny-bart", build_bart),
                        ("tiny-marian", build_marian)):
        print(f"saved a tiny random {name[5:]} model to {build(root / name)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/models")
