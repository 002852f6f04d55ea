"""`corpusmill tasks` tells a user what each task reads, accepts and writes."""
from jobs.cli import main


def test_tasks_lists_inputs_options_and_outputs(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "text-classification:" in out and "zero-shot-classification:" in out
    assert "option top_k (default 1)" in out
    assert "option candidate_labels (required)" in out
    assert "outputs: label (string), score (float), labels (list<" in out
