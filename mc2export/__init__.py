"""mc2export: MobileCLIP / MobileCLIP2 from checkpoint to verified on-device model.

Public API (stable): ``list_variants``, ``get_card``, ``create_model``, ``fold``, ``save_checkpoint``,
``tokenize``, ``image_transform``, ``UserError``.
"""
__version__ = "0.1.0"

from .cards import get_card, list_variants, resolve_variant  # noqa: E402
from .checkpoint import save_checkpoint  # noqa: E402
from .errors import UserError  # noqa: E402
from .factory import count_parameters, create_model  # noqa: E402
from .model import CLIPModel, fold  # noqa: E402


def tokenize(texts, context_length: int = 77):
    """``[B, context_length]`` int64 token ids, exactly as open_clip's CLIP tokenizer."""
    from .tokenizer import tokenize as _tokenize

    return _tokenize(texts, context_length=context_length)


def image_transform(variant: str):
    """The exact inference preprocessing of a variant's weights: PIL image -> ``[3, R, R]`` float tensor."""
    from .preprocess import PreprocessConfig, build_transform

    return build_transform(PreprocessConfig.from_dict(get_card(variant)["preprocess"]))


__all__ = ["list_variants", "get_card", "resolve_variant", "create_model", "fold", "save_checkpoint", "tokenize",
           "image_transform", "count_parameters", "CLIPModel", "UserError", "__version__"]
