"""Tiny random-weight models built offline, saved the way each backend loads them (no download).

Random weights are enough to prove the product's path equals the library's own pipeline; quality
tests stay on the trained tiny CLIP in tests/fixtures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

WORDS = "a an the of photo picture red green blue circle square triangle cat dog un une de chat chien rouge".split()
MAX_TOKENS = 16


def word_tokenizer():
    """A whitespace word-level tokenizer over WORDS (transformers' fast tokenizer, saved with the model)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "</s>", *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", eos_token="</s>",
        cls_token="[CLS]", sep_token="[SEP]", model_max_length=MAX_TOKENS,
    )


def _tower(**extra: int) -> dict[str, int]:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, **extra)


def tiny_siglip(folder: Path, version: int = 1, seed: int = 0) -> Path:
    """A random SigLIP (32×32 input) or SigLIP 2 (naflex, 16-pixel patches) with its processor."""
    from transformers import (
        Siglip2Config, Siglip2ImageProcessor, Siglip2Model, Siglip2Processor,
        SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor,
    )

    torch.manual_seed(seed)
    text = _tower(vocab_size=len(WORDS) + 5, max_position_embeddings=MAX_TOKENS)
    if version == 1:
        config = SiglipConfig(text_config=text, vision_config=_tower(image_size=32, patch_size=8))
        model = SiglipModel(config)
        processor = SiglipProcessor(SiglipImageProcessor(size={"height": 32, "width": 32}), word_tokenizer())
    else:
        config = Siglip2Config(text_config=text, vision_config=_tower(num_patches=16, patch_size=16))
        model = Siglip2Model(config)
        processor = Siglip2Processor(Siglip2ImageProcessor(patch_size=16, max_num_patches=16), word_tokenizer())
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def tiny_text_model(folder: Path, dim: int, seed: int = 0) -> Path:
    """A random sentence-transformers text-only model (BERT + mean pooling + dense to `dim`)."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    bert = folder.parent / f"{folder.name}-bert"
    BertModel(BertConfig(**_tower(vocab_size=len(WORDS) + 5, max_position_embeddings=MAX_TOKENS))).save_pretrained(bert)
    word_tokenizer().save_pretrained(bert)
    transformer = models.Transformer(str(bert), max_seq_length=MAX_TOKENS)
    modules = [transformer, models.Pooling(32, "mean"), models.Dense(32, dim)]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    return folder


def photo(seed: int, size: tuple[int, int]) -> Image.Image:
    """Smooth colour field + noise: a small stand-in for a photograph."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 13, (size[1], size[0], 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def photo_folder(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    """Photos saved as JPEG (big ones are draft-decoded by the indexer) and PNG, one per size."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, size in enumerate(sizes):
        path = folder / f"photo{i}.{'jpg' if i % 2 == 0 else 'png'}"
        photo(i, size).save(path, quality=95) if path.suffix == ".jpg" else photo(i, size).save(path)
        paths.append(path)
    return paths


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.sum(a * b, axis=-1)


TINY_OPEN_CLIP = "embedder-tiny-ViT"  # an open_clip architecture registered by `tiny_open_clip`


def import_open_clip():
    """open_clip, or None where it is missing or cannot be imported (a torchvision built for another torch)."""
    try:
        import open_clip
    except Exception:  # noqa: BLE001 - ImportError, or torchvision's "operator torchvision::nms does not exist"
        return None
    return open_clip


def tiny_open_clip(folder: Path, seed: int = 0) -> Path:
    """Register a tiny ViT architecture with open_clip and save a random checkpoint of it."""
    import json

    open_clip = import_open_clip()
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }
    (folder / f"{TINY_OPEN_CLIP}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    torch.manual_seed(seed)
    checkpoint = folder / "tiny.pt"
    torch.save(open_clip.create_model(TINY_OPEN_CLIP, pretrained=None).state_dict(), checkpoint)
    return checkpoint


def tiny_vit(folder: Path, image_size: int = 32, seed: int = 0) -> Path:
    """A random image-only ViT (hidden 32, 16-pixel patches) with its ViTImageProcessor, for EMBEDDER_VISUAL_MODEL."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        image_size=image_size, patch_size=16,
    )
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder


def clip_with_vit_b32_text(folder: Path, tokenizer_from: Path, seed: int = 7) -> Path:
    """A sentence-transformers CLIP whose text tower is clip-ViT-B-32's (transformers' CLIPTextConfig
    defaults: 12 layers, 512 wide, 8 heads, 49408 tokens, 77 positions; random weights) and whose
    vision tower is tiny; the tokenizer and image processor are `tokenizer_from`'s (a saved CLIP)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.transformer import Transformer
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTextConfig

    torch.manual_seed(seed)
    processor = CLIPProcessor.from_pretrained(str(tokenizer_from))
    tokenizer = processor.tokenizer
    text = CLIPTextConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id)
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.vocab_size) == (512, 12, 8, 49408)
    size = processor.image_processor.crop_size["height"]
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=size, patch_size=16)
    hf_dir = folder.parent / f"{folder.name}-hf"
    CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision)).eval().save_pretrained(str(hf_dir))
    processor.save_pretrained(str(hf_dir))
    SentenceTransformer(modules=[Transformer(str(hf_dir))], device="cpu").save(str(folder))
    return folder
