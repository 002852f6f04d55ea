"""`resources.dtype: int8`: every Linear layer quantised dynamically with one scale per output
channel on CPU (what torch's own `quantize_dynamic` gives), refused on a GPU."""
from __future__ import annotations

import pytest
import torch
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from corpusmill.operators.loading import INT8, load_model


def _load(folder, dtype, device="cpu"):
    return load_model(AutoModelForSequenceClassification, folder, None, dtype=dtype,
                      device=device, trust_remote_code=False, allow_pickle=False)


def test_int8_quantises_every_linear_layer_per_channel(tiny):
    int8 = _load(tiny.classifier, INT8)
    quantised = [m for m in int8.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert quantised and all(m.weight().qscheme() == torch.per_channel_affine for m in quantised)
    assert not any(type(m) is torch.nn.Linear for m in int8.modules())

    reference = quantize_dynamic(_load(tiny.classifier, torch.float32),
                                 {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    tokenizer = AutoTokenizer.from_pretrained(tiny.classifier)
    batch = tokenizer(["a short text", "another one, somewhat longer than the first"],
                      padding=True, return_tensors="pt")
    with torch.inference_mode():
        assert torch.equal(int8(**batch).logits, reference(**batch).logits)


def test_int8_is_refused_on_gpu_before_loading(tiny):
    with pytest.raises(ValueError, match="on a GPU use float16"):
        _load(tiny.classifier, INT8, device="cuda")
