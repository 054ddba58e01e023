"""CLIP's text tower for one query at a time on the CPU: the same fp32 arithmetic, less overhead.

A query is ~5-20 tokens through 12 layers of 512-wide linears, so its time is the weights' matrix
products at a tiny batch (M = the number of tokens) plus Python dispatch. `FastClipText` runs the
transformers CLIP text tower (`CLIPModel.text_model` + `text_projection`) with:

* the text at its true length (CLIP's causal mask means no token before the end-of-text token sees
  what follows it, so padding never changes the pooled vector; sentence-transformers already pads
  only to the longest text of a batch, and a query is a batch of one);
* q, k and v as one matrix product, and every linear's weight pre-packed once for oneDNN
  (`torch.ops.mkldnn`, what torch.compile's CPU backend uses), when this torch has it and it gives
  the same numbers as `F.linear` on this machine; otherwise plain `F.linear`;
* no module hooks, masks or output objects.

Same weights, same dtype: the vectors equal `model.encode`'s up to float rounding (cosine ≥ 0.99999
in tests/test_text_fast.py). int8 and bf16 were measured and not chosen (BENCHMARKS.md §5).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

PACK_CHECK_TOLERANCE = 1e-4  # relative: a packed product must match F.linear to float rounding


class _Linear:
    """y = x @ W.T + b for a 2-D x, with W pre-packed for oneDNN when that is available and exact."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, pack: bool) -> None:
        weight = weight.detach().contiguous()
        self.bias = None if bias is None else bias.detach().contiguous()
        self.packed = _pack(weight, self.bias) if pack else None
        self.weight = weight if self.packed is None else None  # packed: no second copy kept (fused qkv)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


def _pack(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    """The oneDNN-packed weight, or None where this torch/CPU cannot pack it or packs it wrongly."""
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, 16)
        probe = torch.randn(7, weight.shape[1], generator=torch.Generator().manual_seed(0))
        got = torch.ops.mkldnn._linear_pointwise(probe, packed, bias, "none", [], "")
    except (AttributeError, RuntimeError, NotImplementedError):
        return None
    want = F.linear(probe, weight, bias)
    if (got - want).abs().max() > PACK_CHECK_TOLERANCE * max(1.0, float(want.abs().max())):
        return None
    return packed


class FastClipText:
    """One text's token ids → its projected (not yet normalised) CLIP text vector, in fp32."""

    def __init__(self, clip_model: torch.nn.Module, pack: bool = True) -> None:
        text = clip_model.text_model
        config = text.config
        self.heads = int(config.num_attention_heads)
        self.eos_token_id = int(text.eos_token_id)
        self.token_embedding = text.embeddings.token_embedding.weight.detach()
        self.position_embedding = text.embeddings.position_embedding.weight.detach()
        self.layers = []
        for layer in text.encoder.layers:
            attn, mlp = layer.self_attn, layer.mlp
            qkv_w = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
            qkv_b = torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias])
            self.layers.append(
                (
                    _norm(layer.layer_norm1),
                    _Linear(qkv_w, qkv_b, pack),
                    float(attn.scale),
                    _Linear(attn.out_proj.weight, attn.out_proj.bias, pack),
                    _norm(layer.layer_norm2),
                    _Linear(mlp.fc1.weight, mlp.fc1.bias, pack),
                    mlp.activation_fn,
                    _Linear(mlp.fc2.weight, mlp.fc2.bias, pack),
                )
            )
        self.final_norm = _norm(text.final_layer_norm)
        projection = clip_model.text_projection
        self.projection = _Linear(projection.weight, projection.bias, pack)
        self.packed = pack and all(lin.packed is not None for layer in self.layers for lin in layer[1::2])

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        """`input_ids`: one text's ids, 1-D, with its start and end-of-text tokens (as the tokenizer gives)."""
        ids = input_ids.reshape(-1)
        n = ids.shape[0]
        hidden = self.token_embedding[ids] + self.position_embedding[:n]
        width = hidden.shape[1]
        head_dim = width // self.heads
        for norm1, qkv, scale, out, norm2, fc1, act, fc2 in self.layers:
            q, k, v = qkv(norm1(hidden)).view(n, 3, self.heads, head_dim).permute(1, 2, 0, 3)
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
            hidden = hidden + out(attended.transpose(0, 1).reshape(n, width))
            hidden = hidden + fc2(act(fc1(norm2(hidden))))
        pooled = self.final_norm(hidden[self._eos_position(ids)].unsqueeze(0))
        return self.projection(pooled)[0]

    def _eos_position(self, ids: torch.Tensor) -> int:
        """Where transformers' CLIP pools: the highest id (legacy configs, eos_token_id == 2), else
        the first end-of-text token."""
        if self.eos_token_id == 2:
            return int(ids.to(torch.int).argmax())
        hits = (ids == self.eos_token_id).nonzero()
        return int(hits[0, 0]) if len(hits) else 0


def _norm(layer_norm: torch.nn.LayerNorm) -> Callable[[torch.Tensor], torch.Tensor]:
    weight, bias, shape, eps = (
        layer_norm.weight.detach(), layer_norm.bias.detach(), layer_norm.normalized_shape, layer_norm.eps
    )
    return lambda x: F.layer_norm(x, shape, weight, bias, eps)


def clip_model_of(st_model) -> torch.nn.Module | None:
    """The transformers CLIPModel inside a sentence-transformers model whose text vector is exactly
    `get_text_features` (nothing but a Normalize after it), else None."""
    try:
        from transformers import CLIPModel
    except ImportError:  # pragma: no cover - transformers is a dependency
        return None
    modules = list(st_model)
    if not modules:
        return None
    inner = getattr(modules[0], "model", None)
    if not isinstance(inner, CLIPModel):
        return None
    if any(type(m).__name__ != "Normalize" for m in modules[1:]):
        return None
    config = getattr(modules[0], "modality_config", {}).get("text", {})
    if config and config.get("method") != "get_text_features":
        return None
    return inner
