"""int8 graphs from float32 ones, with onnxruntime.quantization. No torch.

Schemes (measured against each other in bench/onnx_int8.py; `DEFAULT_SCHEME` is what
`resources.dtype: int8` uses with the onnxruntime backend):

  dynamic          MatMul/Gemm weights int8 with one scale per output channel, activations
                   uint8 quantised per batch at run time (QuantizeLinear + MatMulInteger)
  dynamic-7bit     the same with weights in 7 bits (`reduce_range`): on AVX2 CPUs without
                   VNNI, the u8 x s8 multiply-add saturates int16 for large weights, which
                   7-bit weights avoid
  dynamic-keep-ffn-out
                   `dynamic-7bit`, but the feed-forward output projections (the layers whose
                   inputs, GELU outputs, have the widest range in BERT-like encoders) stay float32
  static-qdq       weights and activations int8, activation ranges calibrated once on the
                   corpus sample (QDQ format, per-channel weights)
"""
from __future__ import annotations

import re

SCHEMES = ("dynamic", "dynamic-7bit", "dynamic-keep-ffn-out", "static-qdq")
DEFAULT_SCHEME = "dynamic-keep-ffn-out"
# feed-forward output projections as torch.onnx names them: `.../layer.N/output/dense/MatMul`
# (BERT, RoBERTa, ...), `.../layer.N/ffn/lin2/MatMul` (DistilBERT); attention output
# projections (`attention/output/dense`) do not match
FFN_OUT = re.compile(r"(?<!attention)/output/dense/MatMul$|/ffn/lin2/MatMul$")


def quantize(fp32_path: str, int8_path: str, scheme: str, calibration: list[dict],
             keep_float: re.Pattern | None = None) -> dict:
    """Write the int8 graph of `fp32_path` to `int8_path`; `calibration`: padded sample
    batches (static scheme); `keep_float`: nodes whose names match stay float32. Returns what
    was done, for the cache's graph.json."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if scheme not in SCHEMES:
        raise ValueError(f"unknown int8 scheme {scheme!r}; one of {', '.join(SCHEMES)}")
    if scheme == "dynamic-keep-ffn-out":
        keep_float = FFN_OUT
    # the graph as exported: onnxruntime's quant_pre_process fails its symbolic shape
    # inference on these graphs (and leaves a copy of the model in the working directory)
    excluded = _matching(fp32_path, keep_float) if keep_float is not None else []
    if scheme == "static-qdq":
        _quantize_static(fp32_path, int8_path, calibration, excluded)
    else:
        quantize_dynamic(fp32_path, int8_path, per_channel=True,
                         reduce_range=scheme != "dynamic", weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=excluded)
    return {"scheme": scheme, "kept_float32": excluded}


def _matching(path: str, pattern: re.Pattern) -> list[str]:
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    return [n.name for n in graph.node if pattern.search(n.name)]


def _quantize_static(src: str, dst: str, calibration: list[dict], excluded: list[str]) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static,
    )

    import onnx

    names = {i.name for i in onnx.load(src, load_external_data=False).graph.input}

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._batches = iter([{k: v for k, v in b.items() if k in names}
                                  for b in calibration[:32]])

        def get_next(self):
            return next(self._batches, None)

    quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                    nodes_to_exclude=excluded, calibrate_method=CalibrationMethod.MinMax)
