"""Sentence embeddings from token states: pooling modes and a sentence-transformers folder's own
pooling config. Pure torch; no Ray."""
from __future__ import annotations

import json
from typing import Literal

PoolingMode = Literal["mean", "cls", "max"]


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


def folder_pooling(name_or_path: str, revision: str | None) -> tuple[PoolingMode, bool] | None:
    """(mode, normalize) declared by a sentence-transformers model folder (`modules.json` plus
    its pooling module's `config.json`), or None when the folder declares none."""
    modules = _read_json(name_or_path, "modules.json", revision)
    if not modules:
        return None
    normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
    mode: PoolingMode = "mean"
    for module in modules:
        if module.get("type", "").endswith("Pooling"):
            cfg = _read_json(name_or_path, f"{module['path']}/config.json", revision) or {}
            if cfg.get("pooling_mode_cls_token"):
                mode = "cls"
            elif cfg.get("pooling_mode_max_tokens"):
                mode = "max"
    return mode, normalize


def _read_json(name_or_path: str, filename: str, revision: str | None):
    from transformers.utils import cached_file

    path = cached_file(name_or_path, filename, revision=revision,
                       _raise_exceptions_for_missing_entries=False,
                       _raise_exceptions_for_connection_errors=False)
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)
