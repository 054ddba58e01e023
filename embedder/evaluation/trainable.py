"""A loaded model made trainable: its two towers with gradients, what is trained, its contrastive loss,
and saving it in its own library's format.

Two kinds, found from the encoder the product loaded (`load_encoder`): CLIP (a transformers
CLIPModel, inside a sentence-transformers model or as `hf:`), trained with InfoNCE where every
caption of a picture is a positive, in both directions; and SigLIP (`hf:`), trained with its sigmoid
loss (each picture-caption pair a yes/no, at the model's own scale and bias). The logit scale and
bias stay as they are (tags are calibrated on them).

What is trained (`select`): `last` — the last LAST_BLOCKS blocks of each tower, their final norms and
the projections (heads); `lora` — LoRA adapters (peft) on every attention projection, merged into the
weights before saving; `all` — every weight. Saving writes what the backend loads: a
sentence-transformers folder, or transformers' `save_pretrained` with the processor.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from embedder.errors import TuneError
from embedder.models.base import Encoder, PreparedImage
from embedder.models.hf import TEXT_INPUTS, pooled_output
from embedder.models.text_fast import clip_model_of

log = logging.getLogger(__name__)

CLIP, SIGLIP = "clip", "siglip"
CHOICES = ("last", "lora", "all")
LAST_BLOCKS = 2
LORA_RANK = 8
LORA_ALPHA = 16
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
FIXED = ("logit_scale", "logit_bias")  # never trained
# Heads after each tower's blocks, by kind: trained with the last blocks.
HEADS = {
    CLIP: ("vision_model.post_layernorm.", "visual_projection.", "text_model.final_layer_norm.", "text_projection."),
    SIGLIP: ("vision_model.post_layernorm.", "vision_model.head.", "text_model.final_layer_norm.", "text_model.head."),
}


class Trainable:
    """The model inside an `Encoder`, for training (the encoder's own encode methods are not used)."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.device = encoder.device
        library = encoder.model
        processor = getattr(encoder, "processor", None)
        if processor is not None:  # hf: a transformers model and its processor
            self.model = library
            self.tokenizer = processor.tokenizer
            self._processor = processor
            self._sentence_transformer = None
        else:
            clip = clip_model_of(library) if hasattr(library, "preprocess") else None
            if clip is None:
                raise TuneError(
                    f"{encoder.model_id} cannot be tuned: tuning works on CLIP models in sentence-transformers "
                    "format (a plain CLIPModel, nothing after it) and on hf: CLIP and SigLIP models"
                )
            self.model = clip
            self.tokenizer = library.tokenizer
            self._processor = None
            self._sentence_transformer = library
        if not all(hasattr(self.model, tower) for tower in ("text_model", "vision_model")):
            raise TuneError(
                f"{encoder.model_id} cannot be tuned: it has no text tower, and tuning learns from captions "
                "(a CLIP or SigLIP model has one)"
            )
        self.kind = SIGLIP if getattr(self.model, "logit_bias", None) is not None else CLIP
        self.model.float()  # fp32 master weights (the encoder halves them on CUDA); autocast does the rest
        self._peft: Any = None
        self._changing: list[str] = []
        config = getattr(self.model.config, "text_config", self.model.config)
        self.max_tokens = int(getattr(config, "max_position_embeddings", 77))

    # --- inputs -------------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """The text tower's inputs for `texts`, as the backend makes them, on the device."""
        if self._sentence_transformer is not None:
            features = self._sentence_transformer.preprocess(list(texts))
            inputs = {k: v for k, v in features.items() if isinstance(v, torch.Tensor)}
        else:  # SigLIP reads texts padded to its full length, as the encoder gives them
            made = self._processor(
                text=list(texts), padding="max_length", max_length=self.max_tokens, truncation=True, return_tensors="pt"
            )
            inputs = {k: v for k, v in made.items() if k in TEXT_INPUTS}
        return {k: v.to(self.device) for k, v in inputs.items()}

    def meaningful_tokens(self, text: str) -> int:
        """How many tokens of `text` the model knows (special and unknown tokens not counted)."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        ignored = set(self.tokenizer.all_special_ids) | {self.tokenizer.unk_token_id}
        return sum(i not in ignored for i in ids)

    def prepare(self, image: Any) -> PreparedImage:
        """One picture as the model's input, by the backend's own processor."""
        return self.encoder.prepare_image(image)

    # --- forward ------------------------------------------------------------------------------

    def image_features(self, pixels: torch.Tensor, extras: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Unit image vectors of a batch already on the device."""
        return F.normalize(pooled_output(self.model.get_image_features(pixel_values=pixels, **(extras or {}))), dim=-1)

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit text vectors."""
        return F.normalize(pooled_output(self.model.get_text_features(**self.tokenize(texts))), dim=-1)

    def loss(self, images: torch.Tensor, texts: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """The model's own contrastive loss of unit vectors; `positives[i, j]`: text j describes image i."""
        scale = self.model.logit_scale.detach().float().exp()
        logits = scale * images.float() @ texts.float().T
        match = positives.float()
        if self.kind == SIGLIP:
            logits = logits + self.model.logit_bias.detach().float()
            return -F.logsigmoid((2 * match - 1) * logits).sum(dim=1).mean()
        per_image = -(match / match.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
        per_text = -(match / match.sum(0, keepdim=True) * F.log_softmax(logits, dim=0)).sum(0).mean()
        return (per_image + per_text) / 2

    # --- what is trained ----------------------------------------------------------------------

    def select(self, choice: str, seed: int) -> int:
        """Make only `choice`'s parameters trainable (LoRA: add the adapters, from `seed`); how many."""
        if choice not in CHOICES:
            raise TuneError(f"what to train must be one of {', '.join(CHOICES)}, not {choice!r}")
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        if choice == "lora":
            from peft import LoraConfig, get_peft_model

            torch.manual_seed(seed)
            config = LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules=LORA_TARGETS)
            with warnings.catch_warnings():  # transformers' deprecation notes about peft's calls: not the user's
                warnings.simplefilter("ignore", FutureWarning)
                self._peft = get_peft_model(self.model, config)
        else:
            prefixes = self._last_prefixes() if choice == "last" else ("",)
            for name, parameter in self.model.named_parameters():
                if name.startswith(prefixes) and name.rsplit(".", 1)[-1] not in FIXED:
                    parameter.requires_grad_(True)
        return sum(p.numel() for p in self.trained_parameters())

    def _last_prefixes(self) -> tuple[str, ...]:
        prefixes = list(HEADS[self.kind])
        for tower in ("vision_model", "text_model"):
            layers = len(getattr(self.model, tower).encoder.layers)
            prefixes += [f"{tower}.encoder.layers.{i}." for i in range(max(0, layers - LAST_BLOCKS), layers)]
        return tuple(prefixes)

    def trained_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def trained_state(self) -> dict[str, torch.Tensor]:
        """Copies of the trained tensors, by name (what a checkpoint keeps)."""
        return {n: p.detach().to("cpu", copy=True) for n, p in self.model.named_parameters() if p.requires_grad}

    def load_trained(self, state: dict[str, torch.Tensor]) -> None:
        """Put trained tensors back (from `trained_state`)."""
        parameters = dict(self.model.named_parameters())
        missing = set(state) - set(parameters)
        if missing:
            raise TuneError(f"the checkpoint does not fit this model ({sorted(missing)[0]} is not in it)")
        with torch.no_grad():
            for name, tensor in state.items():
                parameters[name].copy_(tensor.to(parameters[name].device))

    def merge(self) -> None:
        """Fold LoRA adapters into the weights (nothing to do for the other choices)."""
        if self._peft is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                merged = self._peft.merge_and_unload()
            if merged is not self.model:  # peft edits the model in place; keep every reference to it right
                raise TuneError("merging the LoRA adapters did not give back the same model")
            self._peft = None

    def changing(self) -> list[str]:
        """The weights training changes, by their names once LoRA is merged: the trained ones, or
        for LoRA the weights its adapters are folded into."""
        if self._peft is None:
            return [n for n, p in self.model.named_parameters() if p.requires_grad]
        return sorted({n.split(".lora_A.")[0] + ".weight" for n, _ in self.model.named_parameters() if ".lora_A." in n})

    def weights(self) -> dict[str, torch.Tensor]:
        """Copies of the weights training changes (`changing`), by name: before training, or after `merge`."""
        names = set(self._changing or self.changing())
        self._changing = sorted(names)
        state = self.model.state_dict()
        return {n: _plain(state, n).detach().to("cpu", copy=True) for n in self._changing}

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        """Put weights (from `weights`, or mixed from them) back; after `merge`."""
        parameters = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in weights.items():
                parameters[name].copy_(tensor.to(parameters[name].device))

    # --- saving -------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """The model as its backend loads it: a sentence-transformers folder, or the transformers model
        with its processor (`save_pretrained`)."""
        if self._sentence_transformer is not None:
            self._sentence_transformer.save(str(folder))
        else:
            self.model.save_pretrained(folder)
            self._processor.save_pretrained(folder)


def _plain(state: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """A weight by its plain name, also while LoRA wraps its layer (`….q_proj.base_layer.weight`)."""
    if name in state:
        return state[name]
    wrapped = name.rsplit(".", 1)
    return state[f"{wrapped[0]}.base_layer.{wrapped[1]}"]
