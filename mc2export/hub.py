"""Downloading a card's weights from the Hugging Face hub (cached, revision-pinnable, offline-aware)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

from .errors import UserError


def weight_source(card: dict, layout: Optional[str] = None) -> dict:
    """The card's first whole-model source (of ``layout`` if given)."""
    sources = card["weights"]["sources"]
    layout = layout or card["weights"]["default"]
    for src in sources:
        if src["layout"] == layout and "text" in src["towers"]:
            return src
    return sources[0]


def download_weights(card: dict, *, revision: Optional[str] = None, cache_dir: Optional[str] = None,
                     layout: Optional[str] = None) -> Path:
    """Local path of the card's checkpoint, fetched into the Hugging Face cache if needed.

    Honors ``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE``; verifies the sha256 where the card records one.
    """
    src = weight_source(card, layout)
    where = f"{src['repo_id']}/{src['filename']}"
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub import errors as hf_errors
    except ImportError:
        raise UserError("downloading weights needs huggingface_hub: pip install huggingface_hub, "
                        "or pass --checkpoint PATH") from None
    try:
        path = Path(hf_hub_download(src["repo_id"], src["filename"], revision=revision or src.get("revision"),
                                    cache_dir=cache_dir))
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled) as e:
        raise UserError(f"could not fetch {where} from the Hugging Face hub (offline, and not in the cache: "
                        f"{_reason(e)}); download it on a connected machine and pass --checkpoint PATH") from None
    except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError, hf_errors.EntryNotFoundError,
            hf_errors.GatedRepoError) as e:
        raise UserError(f"could not fetch {where} from the Hugging Face hub ({_reason(e)}); "
                        "check --revision, or pass a local --checkpoint PATH") from None
    except (hf_errors.HfHubHTTPError, OSError) as e:
        raise UserError(f"could not fetch {where} from the Hugging Face hub (network error: {_reason(e)}); "
                        "retry, or pass a local --checkpoint PATH") from None
    if src.get("sha256"):
        digest = sha256_file(path)
        if digest != src["sha256"]:
            raise UserError(f"{where}: sha256 {digest[:12]}… does not match the card's {src['sha256'][:12]}…; "
                            "delete the cached file and download again")
    return path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _reason(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:160]
