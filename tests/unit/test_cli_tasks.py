"""`corpusmill tasks` tells a user what each task reads, accepts and writes."""
from corpusmill.jobs.cli import main


def test_tasks_lists_inputs_options_and_outputs(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "text-classification:" in out and "zero-shot-classification:" in out
    assert "option top_k (default 1)" in out
    assert "option candidate_labels (required)" in out
    assert "outputs: label (string), score (float), labels (list<" in out


def test_every_task_of_the_task_summary_is_listed(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for task in ("text-classification", "token-classification", "question-answering",
                 "fill-mask", "feature-extraction", "zero-shot-classification",
                 "text-generation", "summarization", "translation", "text2text-generation"):
        assert f"\n{task}: " in f"\n{out}", task
    assert "option stop (default [])" in out  # defaults built by a factory are shown as values
    assert "PydanticUndefined" not in out
    assert "outputs: summary_text (string), input_truncated (bool)" in out
