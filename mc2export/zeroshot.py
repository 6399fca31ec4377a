"""Zero-shot classification with a prompt ensemble (the CLIP recipe)."""
from __future__ import annotations

from typing import List, Sequence

import torch

# OpenAI CLIP's 80 ImageNet prompt templates (Radford et al. 2021), the standard ensemble.
OPENAI_TEMPLATES = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)
# The 7-template subset the CLIP authors found best on ImageNet: 10x cheaper, nearly as good.
SIMPLE_TEMPLATES = ("itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
                    "a {} in a video game.", "art of the {}.", "a photo of the small {}.")
TEMPLATES = {"openai": OPENAI_TEMPLATES, "simple": SIMPLE_TEMPLATES, "none": ("{}",)}


def parse_labels(text: str) -> List[str]:
    from .errors import UserError

    labels = [s.strip() for s in text.split(",") if s.strip()]
    if not labels:
        raise UserError("empty label list: pass --labels \"cat,dog,...\" with at least one label")
    if len(set(labels)) != len(labels):
        dup = next(label for label in labels if labels.count(label) > 1)
        raise UserError(f"label {dup!r} appears twice in --labels: give each class once")
    return labels


@torch.no_grad()
def class_embeddings(model, labels: Sequence[str], templates: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """``[C, D]`` unit vectors: per class, the renormalized mean of its normalized prompt embeddings."""
    from .tokenizer import get_tokenizer

    tok = get_tokenizer()
    prompts = [t.format(label) for label in labels for t in templates]
    tokens = tok(prompts, context_length=model.context_length)
    emb = torch.cat([model.encode_text(tokens[i:i + batch_size], normalize=True)
                     for i in range(0, len(prompts), batch_size)])
    emb = emb.reshape(len(labels), len(templates), -1).mean(1)
    return torch.nn.functional.normalize(emb, dim=-1)


def truncated_prompts(labels: Sequence[str], templates: Sequence[str], context_length: int = 77) -> List[str]:
    from .tokenizer import get_tokenizer

    prompts = [t.format(label) for label in labels for t in templates]
    return [prompts[i] for i in get_tokenizer().truncated(prompts, context_length)]
