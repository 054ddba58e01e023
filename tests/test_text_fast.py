"""The CPU text speed-up (EMBEDDER_TEXT_SPEEDUP=auto) gives the vectors the plain path gives.

On the trained tiny CLIP through the product's Encoder, and on a random-weight text tower of the
real clip-ViT-B-32 architecture (transformers' CLIPTextConfig defaults: 12 layers, 512 wide, 8 heads,
49408 tokens, 77 positions) against transformers' own `get_text_features` on texts padded to 77.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from embedder.config import Settings
from embedder.models.base import Encoder
from embedder.models.sentence_transformers import SentenceTransformersEncoder
from embedder.models import load_encoder
from embedder.errors import ConfigError
from embedder.models.text_fast import FastClipText, clip_model_of
from modelkit import cosine, photo

SPEEDUP_COSINE = 0.999  # the bar; the path is the same fp32 arithmetic, so it is ~1.0
TEXTS = [
    "a red circle",
    "small blue square on the left",
    "purple",
    "a large green triangle next to a yellow star and an orange cross " * 8,  # past 77 tokens: cut
]


@pytest.fixture(scope="module")
def encoders(model_path: Path) -> dict[str, Encoder]:
    return {mode: SentenceTransformersEncoder(str(model_path), "cpu", 16, text_speedup=mode) for mode in ("auto", "off")}


def test_tiny_clip_queries_match_the_plain_path_and_take_the_fast_one(encoders: dict[str, Encoder]) -> None:
    fast, plain = encoders["auto"], encoders["off"]
    for batch in ([TEXTS[0]], TEXTS):  # one query, and a few at once (each at its own length)
        assert cosine(fast.encode_texts(batch), plain.encode_texts(batch)).min() >= SPEEDUP_COSINE
    assert isinstance(fast._fast_text, FastClipText)
    assert plain._fast_text is None  # off: never built
    # Many texts (evaluation, not queries) keep sentence-transformers' batched path.
    many = [f"a {c} circle" for c in ("red", "blue", "green")] * 4
    assert cosine(fast.encode_texts(many), plain.encode_texts(many)).min() >= SPEEDUP_COSINE


def test_image_vectors_are_untouched_by_the_speedup(encoders: dict[str, Encoder]) -> None:
    images = [photo(seed, (96, 72)) for seed in range(3)]
    fast, plain = encoders["auto"], encoders["off"]
    fast.encode_texts(["a red circle"])  # the fast text path is built and used before the images
    np.testing.assert_array_equal(fast.encode_images(images), plain.encode_images(images))


def test_setting_is_read_and_passed_to_the_encoder(model_path: Path) -> None:
    assert Settings().text_speedup == "auto"
    assert Settings.from_env({"EMBEDDER_TEXT_SPEEDUP": " OFF "}).text_speedup == "off"
    with pytest.raises(ConfigError, match="EMBEDDER_TEXT_SPEEDUP"):
        Settings.from_env({"EMBEDDER_TEXT_SPEEDUP": "int8"})
    encoder = load_encoder(replace(Settings(model=str(model_path), device="cpu"), text_speedup="off"))
    encoder.encode_texts(["a red circle"])
    assert encoder._fast_text is None


def test_a_non_clip_model_falls_back_to_the_plain_path(tmp_path: Path) -> None:
    from modelkit import tiny_text_model
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_text_model(tmp_path / "text", dim=32)), device="cpu")
    assert clip_model_of(model) is None


@pytest.fixture(scope="module")
def vit_b32_text() -> torch.nn.Module:
    """A random CLIP whose text tower is clip-ViT-B-32's (the vision tower is tiny: unused here)."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig

    torch.manual_seed(7)
    text = CLIPTextConfig()
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.vocab_size) == (512, 12, 8, 49408)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=16)
    return CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision)).eval()


@pytest.mark.parametrize("legacy_eos", [False, True])
def test_vit_b32_text_tower_matches_transformers_padded_to_77(vit_b32_text: torch.nn.Module, legacy_eos: bool) -> None:
    model = vit_b32_text
    eos = model.config.text_config.eos_token_id
    model.text_model.eos_token_id = 2 if legacy_eos else eos  # hub configs of openai/clip-* still say 2
    rng = np.random.default_rng(3)
    lengths = [3, 9, 17, 77]
    ids = torch.full((len(lengths), 77), eos, dtype=torch.long)
    mask = torch.zeros((len(lengths), 77), dtype=torch.long)
    rows = []
    for i, n in enumerate(lengths):
        row = [49406, *rng.integers(0, 49406, n - 2).tolist(), 49407]
        ids[i, :n], mask[i, :n] = torch.tensor(row), 1
        rows.append(torch.tensor(row))
    with torch.inference_mode():
        want = model.get_text_features(input_ids=ids, attention_mask=mask).pooler_output.numpy()
        for pack in (True, False):
            fast = FastClipText(model, pack=pack)
            got = torch.stack([fast(row) for row in rows]).numpy()
            assert cosine(got, want).min() >= SPEEDUP_COSINE
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * np.abs(want).max())
