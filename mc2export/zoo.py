"""The ``mc2export zoo`` table: every card, our parameter counts beside the paper's, targets."""
from __future__ import annotations

from typing import Dict, List

import torch

from . import cards
from .model import CLIPModel, fold


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f}"


def zoo_rows(count: bool = True) -> List[Dict[str, str]]:
    rows = []
    for vid in cards.list_variants():
        card = cards.get_card(vid)
        paper = card["paper"]
        row = {"variant": vid, "image": card["image"]["name"], "text": card["text"]["name"],
               "res": str(card["resolution"]), "embed": str(card["embed_dim"]),
               "paper M (img+txt)": f"{paper['params_m']['image']}+{paper['params_m']['text']}",
               "target ms (img+txt)": f"{paper['latency_ms']['image']}+{paper['latency_ms']['text']}",
               "IN-1k": "-" if paper.get("imagenet_zeroshot_top1") is None else str(paper["imagenet_zeroshot_top1"])}
        if count:
            # On the meta device: shapes only, no memory, seconds for the whole zoo.
            with torch.no_grad(), torch.device("meta"):
                model = CLIPModel(vid, card["weights"]["default"])
                row["ours M (img+txt)"] = f"{_params(model.visual)}+{_params(model.text)}"
                folded = fold(model)
                row["folded M"] = f"{_params(folded.visual)}+{_params(folded.text)}"
                del model, folded
        rows.append(row)
    return rows


def _params(module) -> str:
    return _millions(sum(p.numel() for p in module.parameters()))


def format_table(rows: List[Dict[str, str]]) -> str:
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    line = lambda vals: "  ".join(v.ljust(widths[c]) for c, v in zip(cols, vals))  # noqa: E731
    out = [line(cols), line(["-" * widths[c] for c in cols])]
    out += [line([r[c] for c in cols]) for r in rows]
    return "\n".join(out)
