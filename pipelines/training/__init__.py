"""The training tasks: task name -> a fresh `TrainingTask` (each spec configures its own
instance from its data, e.g. single- or multi-label). Named as the inference task the trained
model serves, so `task:` reads the same in a train spec and in the job that uses the model."""
from __future__ import annotations

from corpusmill.pipelines.training.base import TrainingTask


class UnknownTrainingTask(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def _builders() -> dict:
    from corpusmill.pipelines.training.fill_mask import FillMaskTraining
    from corpusmill.pipelines.training.question_answering import QuestionAnsweringTraining
    from corpusmill.pipelines.training.seq2seq import Seq2SeqTraining
    from corpusmill.pipelines.training.text_classification import TextClassificationTraining
    from corpusmill.pipelines.training.token_classification import TokenClassificationTraining

    return {
        "text-classification": TextClassificationTraining,
        "token-classification": TokenClassificationTraining,
        "question-answering": QuestionAnsweringTraining,
        "summarization": lambda: Seq2SeqTraining("summarization"),
        "translation": lambda: Seq2SeqTraining("translation"),
        "text2text-generation": lambda: Seq2SeqTraining("text2text-generation"),
        "fill-mask": FillMaskTraining,
    }


def training_task_names() -> list[str]:
    return sorted(_builders())


def get_training_task(name: str) -> TrainingTask:
    builders = _builders()
    if name not in builders:
        raise UnknownTrainingTask(f"unknown training task {name!r}; trainable tasks: "
                                  f"{', '.join(sorted(builders))}")
    return builders[name]()
