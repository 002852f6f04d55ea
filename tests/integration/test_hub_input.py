"""A Hugging Face hub dataset as input (`hf://datasets/...`), on a file-backed stand-in of
huggingface_hub's filesystem (tests/hub_standin.py; Ray workers read through the same,
pickled): JSON Lines and Arrow files in one repository, the revision pinned to its commit in
the provenance and the card, and a file changed in a later commit refused on rerun."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import corpusmill
from corpusmill.jobs.stores import hub
from tests.hub_standin import LocalHub, publish

# a whole job (or several) on Ray: tens of seconds each on 2 cores
pytestmark = pytest.mark.slow


def test_hub_dataset_in_pinned_to_a_commit(tmp_path, tiny, ray_session, monkeypatch):
    from huggingface_hub import DatasetCard

    lines = tmp_path / "a.jsonl"
    lines.write_text("\n".join(json.dumps({"text": f"review {i}", "stars": i}) for i in range(5)))
    arrow = tmp_path / "b.arrow"
    table = pa.table({"text": ["good", "bad", "fine"], "stars": [5, 1, 3]})
    with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as out:
        out.write_table(table)
    root = tmp_path / "hub"
    publish(root, "acme/reviews", "aaa111", {"data/a.jsonl": lines, "data/b.arrow": arrow})
    monkeypatch.setattr(hub, "hub_filesystem", lambda: LocalHub(root))

    spec = {"task": "text-classification", "model": tiny.classifier,
            "input": "hf://datasets/acme/reviews/data", "output": str(tmp_path / "out")}
    result = corpusmill.run(spec)
    assert result.exit_code == 0
    rows = result.to_arrow().sort_by("row_id").to_pylist()
    assert [(r["row_id"], r["text"], r["stars"]) for r in rows] == (
        [(f"a.jsonl:{i}", f"review {i}", i) for i in range(5)]
        + [("b.arrow:0", "good", 5), ("b.arrow:1", "bad", 1), ("b.arrow:2", "fine", 3)])
    pinned = {"hub": {"repo": "acme/reviews", "repo_type": "dataset", "revision": "main",
                      "commit": "aaa111"}}
    assert result.manifest()["provenance"]["input"] == pinned
    written = pq.read_schema(result.data_files()[0]).metadata[b"corpusmill"]
    assert json.loads(written)["input"] == pinned
    card = DatasetCard.load(result.card)
    assert card.data.to_dict()["corpusmill"]["input_source"] == pinned
    assert "commit `aaa111`" in card.text

    lines.write_text("\n".join(json.dumps({"text": f"changed {i}", "stars": i})
                               for i in range(5)))
    publish(root, "acme/reviews", "bbb222", {"data/a.jsonl": lines, "data/b.arrow": arrow})
    with pytest.raises(corpusmill.JobError, match=r"'a\.jsonl' changed since an earlier run"):
        corpusmill.run(spec)
