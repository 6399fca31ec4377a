"""Downloading a card's weights from the Hugging Face hub (cached, revision-pinnable, offline-aware)."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Optional

from .errors import UserError, first_line


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

    Honors ``HF_HUB_OFFLINE=1``, ``HF_HUB_CACHE`` and ``HF_ENDPOINT``; verifies the sha256 where the card
    records one. Fails fast when the hub cannot be reached: one probe of the endpoint (a few seconds at
    most), then the cache only -- not the library's five retries with back-off (26-51 s).
    """
    src = weight_source(card, layout)
    where = f"{src['repo_id']}/{src['filename']}"
    try:
        from huggingface_hub import constants, hf_hub_download
        from huggingface_hub import errors as hf_errors
    except ImportError:
        raise UserError("downloading weights needs huggingface_hub: pip install huggingface_hub, "
                        "or pass --checkpoint PATH") from None
    offline = constants.HF_HUB_OFFLINE
    unreachable = None if offline else hub_unreachable()
    try:
        path = Path(hf_hub_download(src["repo_id"], src["filename"], revision=revision or src.get("revision"),
                                    cache_dir=cache_dir, local_files_only=offline or unreachable is not None))
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled):
        why = ("HF_HUB_OFFLINE is set" if offline else
               f"the hub at {constants.ENDPOINT} cannot be reached: {unreachable}")
        raise UserError(f"cannot fetch {where}: {why}, and it is not in the cache; download it on a connected "
                        "machine and pass --checkpoint PATH") from None
    except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError, hf_errors.EntryNotFoundError,
            hf_errors.GatedRepoError) as e:
        raise UserError(f"cannot fetch {where} from the Hugging Face hub ({first_line(e, 160)}); "
                        "check --revision, or pass a local --checkpoint PATH") from None
    except (hf_errors.HfHubHTTPError, OSError) as e:
        raise UserError(f"cannot fetch {where} from the Hugging Face hub (network error: {first_line(e, 160)}); "
                        "retry, or pass a local --checkpoint PATH") from None
    if unreachable is not None:
        print(f"note: the hub cannot be reached ({unreachable}): using the cached {where}", file=sys.stderr)
    if src.get("sha256"):
        digest = sha256_file(path)
        if digest != src["sha256"]:
            raise UserError(f"{where}: sha256 {digest[:12]}… does not match the card's {src['sha256'][:12]}…; "
                            "delete the cached file and download again")
    return path


def hub_unreachable(timeout: float = 5.0) -> Optional[str]:
    """Why the hub endpoint cannot be reached (DNS, refused, timeout), or None when it answers at all.
    One request through huggingface_hub's own client, so proxies and ``HF_ENDPOINT`` apply."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)  # requests and httpx clients alike
    except Exception as e:  # the client's transport errors: any HTTP answer means reachable
        return first_line(e, 100)
    return None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
