"""The model zoo's registry: reads the variant cards (``models/*.json``), the only copy of the variant table."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List

from .errors import UserError

Card = Dict[str, Any]


def _cards_dir():
    # A source checkout (or editable install) reads the top-level models/ folder; a wheel ships it as
    # the package mc2export.model_cards (not mc2export.cards: a package of that name would shadow this module)
    here = Path(__file__).resolve().parent.parent / "models"
    if here.is_dir() and any(here.glob("*.json")):
        return here
    return resources.files("mc2export.model_cards")


@lru_cache(maxsize=1)
def _load_all() -> Dict[str, Card]:
    cards = {}
    for entry in sorted(_cards_dir().iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json"):
            card = json.loads(entry.read_text(encoding="utf-8"))
            cards[card["id"]] = card
    if not cards:
        raise UserError("no model cards found: the mc2export installation is incomplete; reinstall it")
    return cards


_EXTRA: Dict[str, Card] = {}  # cards registered at run time (custom students, test cards)

REQUIRED_KEYS = ("id", "name", "resolution", "embed_dim", "image", "text", "preprocess", "weights", "paper")


def register_card(card: Card) -> str:
    """Make a custom card (e.g. a small student for training) usable by id; returns the id."""
    missing = [k for k in REQUIRED_KEYS if k not in card]
    if missing:
        raise UserError(f"card {card.get('id', '?')!r} lacks {', '.join(missing)}: copy a card from models/ "
                        "and edit it")
    if card["id"] in _load_all() and _load_all()[card["id"]] != card:
        raise UserError(f"card id {card['id']!r} is a built-in variant: give your card another id")
    _EXTRA[card["id"]] = json.loads(json.dumps(card))
    _aliases.cache_clear()
    return card["id"]


def load_card_file(path) -> str:
    """Register the card in a JSON file; returns its id."""
    p = Path(path)
    try:
        card = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read card '{p}': {e}") from None
    return register_card(card)


def _normalize(name: str) -> str:
    return name.strip().lower().replace("_", "-")


@lru_cache(maxsize=1)
def _aliases() -> Dict[str, str]:
    table = {}
    for vid, card in {**_load_all(), **_EXTRA}.items():
        for name in [vid, card["name"], *card.get("aliases", [])]:
            table[_normalize(name)] = vid
    return table


def list_variants() -> List[str]:
    """Every variant id, MobileCLIP2 first (the order of ``mc2export zoo``)."""
    return sorted(_load_all(), key=lambda v: (not v.startswith("mobileclip2"), v))


def resolve_variant(name: str) -> str:
    """Variant id for an id, a card name (``MobileCLIP2-S0``) or a short name (``s0``)."""
    vid = _aliases().get(_normalize(str(name)))
    if vid is None:
        raise UserError(f"unknown variant {name!r}: choose one of {', '.join(list_variants())} "
                        "(short names s0, s2, b, s3, s4, l14 mean MobileCLIP2)")
    return vid


def get_card(name: str) -> Card:
    """The card of a variant (a fresh copy: callers may modify it)."""
    vid = resolve_variant(name)
    return json.loads(json.dumps(_EXTRA.get(vid) or _load_all()[vid]))


def is_builtin(vid: str) -> bool:
    return vid in _load_all()


def image_config(card: Card, layout: str | None = None) -> Dict[str, Any]:
    """The image-tower hyper-parameters for weights of ``layout`` (some references differ per layout)."""
    cfg = dict(card["image"], embed_dim=card["embed_dim"])
    cfg.update(card.get("image_layouts", {}).get(layout or "", {}))
    return cfg


def text_config(card: Card) -> Dict[str, Any]:
    return dict(card["text"], embed_dim=card["embed_dim"])
