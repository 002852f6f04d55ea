"""Sentence embeddings from token states: pooling modes and what a sentence-transformers folder
declares around its transformer (pooling, normalisation, input length). Pure torch; no Ray."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Literal

PoolingMode = Literal["mean", "cls", "max"]
SUPPORTED_MODES = ("mean", "cls", "max")

# sentence-transformers' pooling config, old format (one boolean per mode) -> mode name as its
# newer format (`pooling_mode: "mean"` or a list of modes) writes it
_LEGACY_MODE_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# module types (last dotted part of modules.json's `type`) whose effect `pool` reproduces
_REPRODUCED_MODULES = ("Transformer", "Pooling", "Normalize")


def pool(hidden, attention_mask, mode: PoolingMode):
    """(batch, seq, hidden) token states + (batch, seq) mask -> (batch, hidden) embeddings,
    computed as sentence-transformers computes them."""
    import torch

    if mode == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    summed = (hidden * mask).sum(dim=1)
    return summed / mask.sum(dim=1).clamp(min=1e-9)


@dataclass(frozen=True)
class SentenceTransformersFolder:
    """What a sentence-transformers model folder declares around its transformer."""

    pooling_modes: tuple[str, ...]   # e.g. ("mean",); several are concatenated by s-t
    normalize: bool                  # a Normalize module follows the pooling
    other_modules: tuple[str, ...]   # module types `pool` does not reproduce (Dense, ...)
    max_seq_length: int | None       # s-t truncates inputs to this many tokens
    do_lower_case: bool              # s-t lower-cases texts before tokenizing


def read_sentence_transformers_folder(name_or_path: str,
                                      revision: str | None) -> SentenceTransformersFolder | None:
    """The folder's sentence-transformers declarations (`modules.json`, the pooling module's
    `config.json`, `sentence_bert_config.json`), or None when it has no `modules.json`. Both
    the old (`pooling_mode_mean_tokens: true`) and the new (`pooling_mode: mean`) pooling
    formats are read."""
    return _read_folder(name_or_path, revision)


@functools.lru_cache(maxsize=8)
def _read_folder(name_or_path: str, revision: str | None) -> SentenceTransformersFolder | None:
    modules = _read_json(name_or_path, "modules.json", revision)
    if not modules:
        return None
    modes: tuple[str, ...] = ()
    others = []
    for module in modules:
        kind = module.get("type", "").rsplit(".", 1)[-1]
        if kind == "Pooling":
            cfg = _read_json(name_or_path, _join(module.get("path", ""), "config.json"),
                             revision) or {}
            modes = declared_pooling_modes(cfg)
        elif kind not in _REPRODUCED_MODULES:
            others.append(kind or "?")
    normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
    settings = _read_json(name_or_path, "sentence_bert_config.json", revision) or {}
    return SentenceTransformersFolder(
        pooling_modes=modes, normalize=normalize, other_modules=tuple(others),
        max_seq_length=settings.get("max_seq_length"),
        do_lower_case=bool(settings.get("do_lower_case", False)))


def declared_pooling_modes(cfg: dict) -> tuple[str, ...]:
    """Pooling modes of a sentence-transformers pooling `config.json`, in either format."""
    if "pooling_mode" in cfg:
        declared = cfg["pooling_mode"]
        return (declared,) if isinstance(declared, str) else tuple(declared)
    return tuple(mode for key, mode in _LEGACY_MODE_KEYS.items() if cfg.get(key))


def folder_pooling(name_or_path: str, revision: str | None) -> tuple[PoolingMode, bool] | None:
    """(mode, normalize) declared by a sentence-transformers model folder (`modules.json` plus
    its pooling module's `config.json`), or None when the folder declares none. A mode `pool`
    does not offer falls back to mean."""
    folder = read_sentence_transformers_folder(name_or_path, revision)
    if folder is None:
        return None
    modes = folder.pooling_modes
    mode: PoolingMode = "cls" if "cls" in modes else "max" if "max" in modes else "mean"
    return mode, folder.normalize


def _join(folder: str, name: str) -> str:
    return f"{folder.rstrip('/')}/{name}" if folder else name


def _read_json(name_or_path: str, filename: str, revision: str | None):
    from transformers.utils import cached_file

    path = cached_file(name_or_path, filename, revision=revision,
                       _raise_exceptions_for_missing_entries=False,
                       _raise_exceptions_for_connection_errors=False)
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)
