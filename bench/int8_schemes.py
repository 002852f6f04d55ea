"""Experimental int8 schemes measured by bench/int8_agreement.py; corpusmill itself does not use
them (`dtype: int8` is torch's quantize_dynamic, per channel). Dynamic int8 quantisation of
Linear layers for CPU inference.

torch's own `quantize_dynamic` (fbgemm) quantises activations to 7 bits (`reduce_range=True`)
with one scale for the whole input tensor, i.e. for a whole micro-batch of padded tokens. On
this project's benchmark classifier that flipped ~2% of labels against float32
(bench/RESULTS.md). The scheme here spends the precision differently, at nearly the same speed:

- **8-bit activations, 7-bit weights.** On CPUs without VNNI (AVX2 only) fbgemm multiplies
  uint8 activations by int8 weights with `vpmaddubsw`, which adds pairs of products into
  saturating int16: 255 x 127 x 2 overflows, which is why torch drops the activations to 7 bits.
  Weights in [-64, 63] keep every pair within int16 (255 x 64 x 2 = 32,640) while the
  activations keep all 8 bits; weights (one scale per output channel) lose less from the
  missing bit than activations do. Calling fbgemm with full-range activations and 8-bit
  weights instead saturates badly (~14% relative error on random inputs, on AVX2).
- **One activation scale per token.** Each row of the input is divided by its own absolute
  maximum before fbgemm quantises the (now uniformly ranged) tensor, and the output row is
  multiplied back; the bias is added in float32 afterwards. A long or unusual text in the
  micro-batch therefore no longer coarsens every other row's quantisation step.

Outputs are deterministic (fixed kernels, no calibration data, no randomness) and depend on a
row's micro-batch only through fbgemm's per-tensor zero point, which the per-token scaling
keeps nearly constant.
"""
from __future__ import annotations

import torch

WEIGHT_BITS = 7  # 8-bit activations x 7-bit weights cannot saturate vpmaddubsw's int16 pairs


class Int8Linear(torch.nn.Module):
    """A float32 Linear layer run as int8 x int8 with int32 accumulation (fbgemm):
    weights quantised once, symmetric, one scale per output channel, to `weight_bits`;
    activations quantised per call, one scale per token (`per_token`) or per tensor."""

    def __init__(self, linear: torch.nn.Linear, *, weight_bits: int = WEIGHT_BITS,
                 reduce_range: bool = False, per_token: bool = True):
        super().__init__()
        if not 2 <= weight_bits <= 8:
            raise ValueError(f"weight_bits must be in [2, 8], got {weight_bits}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight_bits, self.reduce_range, self.per_token = weight_bits, reduce_range, per_token
        weight = linear.weight.detach().to(torch.float32)  # (out, in)
        qmin, qmax = -2 ** (weight_bits - 1), 2 ** (weight_bits - 1) - 1
        scale = (weight.abs().amax(dim=1) / ((qmax - qmin) / 2)).clamp_min(
            torch.finfo(torch.float32).eps)  # (out,)
        q = torch.clamp(torch.round(weight / scale[:, None]), qmin, qmax).to(torch.int8)
        qweight = torch._make_per_channel_quantized_tensor(
            q, scale.to(torch.float64), torch.zeros_like(scale, dtype=torch.int64), 0)
        bias = None if linear.bias is None else linear.bias.detach().to(torch.float32).clone()
        # per token, the bias is added after the rows are scaled back, so fbgemm gets none
        self.register_buffer("bias", bias if per_token else None)
        self._packed = torch.ops.quantized.linear_prepack(qweight, None if per_token else bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        dtype = x.dtype
        x = x.to(torch.float32)
        if not self.per_token:
            return torch.ops.quantized.linear_dynamic(x, self._packed, self.reduce_range).to(dtype)
        row_max = x.abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
        y = torch.ops.quantized.linear_dynamic(x / row_max, self._packed, self.reduce_range)
        y = y.mul_(row_max)
        if self.bias is not None:
            y = y.add_(self.bias)
        return y.to(dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"weight_bits={self.weight_bits}, activation_bits="
                f"{7 if self.reduce_range else 8}, per_token={self.per_token}")


def quantize_int8(model: torch.nn.Module, *, keep_float: tuple[str, ...] = (),
                  weight_bits: int = WEIGHT_BITS, reduce_range: bool = False,
                  per_token: bool = True) -> torch.nn.Module:
    """`model` (float32, on CPU) with every `torch.nn.Linear` replaced in place by an
    `Int8Linear`, except those whose qualified name equals or ends with an entry of
    `keep_float` (e.g. "classifier"), which stay float32. Returns the model."""
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            qualified = f"{parent_name}.{name}" if parent_name else name
            if type(child) is not torch.nn.Linear or _matches(qualified, keep_float):
                continue
            setattr(parent, name, Int8Linear(child, weight_bits=weight_bits,
                                             reduce_range=reduce_range, per_token=per_token))
    return model


def _matches(qualified: str, patterns: tuple[str, ...]) -> bool:
    return any(qualified == p or qualified.endswith("." + p) for p in patterns)
