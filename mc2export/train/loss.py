"""The multi-modal reinforced-training loss of MobileCLIP / MobileCLIP2 (MISSION.md §6).

For one caption set c (ground-truth or synthetic) of a batch of N (image, caption) pairs, with unit
student features x_i (images), y_j (captions), learned student scale s, and teacher k's unit
features u_i^k, v_j^k at its own logit scale τ_k (k = 1..K):

    S^{i→t}_ij = s·x_i·y_j             S^{t→i}_ji = s·y_j·x_i                   (student logits)
    P^{i→t}_i  = (1/K) Σ_k softmax_j(τ_k·u_i^k·v_j^k)                           (ensemble, averaged
    P^{t→i}_j  = (1/K) Σ_k softmax_i(τ_k·v_j^k·u_i^k)                            after the softmax)
    L_CLIP     = ½ [ CE(S^{i→t}, I) + CE(S^{t→i}, I) ]                          (mean over rows)
    L_distill  = ½ [ mean_i KL(P^{i→t}_i ‖ softmax S^{i→t}_i) + mean_j KL(P^{t→i}_j ‖ softmax S^{t→i}_j) ]
    L_c        = (1 − λ)·L_CLIP + λ·L_distill

and the batch loss is L = L_gt + L_syn. Notes:

* Apple's open_clip patch (``DistillClipLoss.dist_loss``) writes the distillation term as the cross
  entropy −Σ P log Q; KL = CE − H(P) differs by the teachers' entropy, a constant: same gradients,
  a smaller reported value (0 when the student matches the teachers).
* "Mean over teachers of the KL" and "KL of the ensemble averaged after softmax" also differ only by
  a constant (the entropies' Jensen gap): the gradient is the same. We report KL(P̄ ‖ Q).
* Teacher embeddings are re-normalized per teacher (the stored ones are unit already).
* Under DDP (``world > 1``) each rank computes the rows of its own samples against the columns of
  all ranks (open_clip's ``local_loss=True, gather_with_grad=True``): features are all-gathered with
  gradient flowing back to the local shard. Averaged by DDP, the gradients equal those of one
  process on the whole global batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F


# ------------------------------------------------------------------------------------- distributed
class _AllGather(torch.autograd.Function):
    """all_gather whose backward sums the gradients of every rank's copy and keeps the local slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        ctx.world, ctx.rank, ctx.n = dist.get_world_size(), dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(ctx.world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        grad = grad.contiguous()
        if dist.get_backend() == "nccl":
            out = torch.empty((ctx.n,) + tuple(grad.shape[1:]), dtype=grad.dtype, device=grad.device)
            dist.reduce_scatter_tensor(out, grad)
            return out
        grad = grad.clone()  # gloo has no reduce_scatter: all_reduce, then take our rows
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    return _AllGather.apply(x)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, 0)


# ---------------------------------------------------------------------------------------------- loss
@dataclass(frozen=True)
class LossConfig:
    lam: float = 1.0                            # λ: weight of the distillation term
    teacher_dims: Tuple[int, ...] = ()          # widths of the concatenated teacher embeddings
    teacher_scales: Tuple[float, ...] = ()      # τ_k, each teacher's logit scale (e.g. 70, 60)

    def __post_init__(self):
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lambda must be in [0, 1], got {self.lam}")
        if self.lam > 0 and (not self.teacher_dims or len(self.teacher_dims) != len(self.teacher_scales)):
            raise ValueError("distillation needs one logit scale per teacher embedding block")


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def ensemble_probs(a: torch.Tensor, b: torch.Tensor, dims: Sequence[int], scales: Sequence[float]) -> torch.Tensor:
    """``[n, m]``: (1/K) Σ_k softmax over columns of τ_k · â_k b̂_kᵀ, with a, b teacher embeddings
    concatenated along the feature axis (block k = columns dims[0] + ... + dims[k-1] onwards)."""
    probs, start = None, 0
    for d, s in zip(dims, scales):
        ak = F.normalize(_at_least_fp32(a[:, start:start + d]), dim=-1)
        bk = F.normalize(_at_least_fp32(b[:, start:start + d]), dim=-1)
        p = torch.softmax(float(s) * ak @ bk.T, dim=1)
        probs = p if probs is None else probs + p
        start += d
    return probs / len(dims)


def kl_rows(p: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """mean over rows of KL(p_i ‖ softmax(logits_i))."""
    logq = F.log_softmax(logits, dim=1)
    return (torch.special.xlogy(p, p) - p * logq).sum(1).mean()


def caption_set_loss(img: torch.Tensor, txt: torch.Tensor, img_all: torch.Tensor, txt_all: torch.Tensor,
                     scale: torch.Tensor, offset: int, cfg: LossConfig,
                     t_img: Optional[torch.Tensor] = None, t_txt: Optional[torch.Tensor] = None,
                     t_img_all: Optional[torch.Tensor] = None, t_txt_all: Optional[torch.Tensor] = None
                     ) -> Dict[str, torch.Tensor]:
    """L_c for one caption set: local rows (img, txt) against all columns (img_all, txt_all)."""
    labels = torch.arange(img.shape[0], device=img.device) + offset
    logits_i2t = scale * img @ txt_all.T
    logits_t2i = scale * txt @ img_all.T
    clip = (F.cross_entropy(logits_i2t, labels) + F.cross_entropy(logits_t2i, labels)) / 2
    out = {"clip": clip}
    if cfg.lam > 0:
        p_i2t = ensemble_probs(t_img, t_txt_all, cfg.teacher_dims, cfg.teacher_scales)
        p_t2i = ensemble_probs(t_txt, t_img_all, cfg.teacher_dims, cfg.teacher_scales)
        distill = (kl_rows(p_i2t, logits_i2t) + kl_rows(p_t2i, logits_t2i)) / 2
        out["distill"] = distill
        out["total"] = (1 - cfg.lam) * clip + cfg.lam * distill
    else:
        out["total"] = clip
    return out


def dr_loss(img: torch.Tensor, texts: Dict[str, torch.Tensor], scale: torch.Tensor, cfg: LossConfig,
            teacher_img: Optional[torch.Tensor] = None, teacher_texts: Optional[Dict[str, torch.Tensor]] = None,
            distributed: bool = False) -> Dict[str, torch.Tensor]:
    """The batch loss: Σ over caption sets (``texts``: e.g. {"gt": ..., "syn": ...}) of L_c.

    ``img`` / ``texts`` are the student's unit features of the local batch (float32), ``scale`` its
    exp(logit_scale); ``teacher_*`` the stored teacher embeddings of the same samples. Returns
    ``loss`` (to backpropagate), ``clip`` and ``distill`` (sums over sets) and ``loss_<set>``."""
    offset = 0
    gather, gather_t = (lambda x: x), (lambda x: x)
    if distributed:
        import torch.distributed as dist

        offset = dist.get_rank() * img.shape[0]
        gather, gather_t = gather_with_grad, gather_no_grad
    img_all = gather(img)
    t_img_all = gather_t(teacher_img) if cfg.lam > 0 else None
    total, parts = 0.0, {}
    clip_sum, distill_sum = 0.0, 0.0
    for name, txt in texts.items():
        t_txt = teacher_texts[name] if cfg.lam > 0 else None
        r = caption_set_loss(img, txt, img_all, gather(txt), scale, offset, cfg,
                             teacher_img, t_txt, t_img_all, gather_t(t_txt) if cfg.lam > 0 else None)
        total = total + r["total"]
        clip_sum = clip_sum + r["clip"].detach()
        if "distill" in r:
            distill_sum = distill_sum + r["distill"].detach()
        parts[f"loss_{name}"] = r["total"].detach()
    out = {"loss": total, "clip": clip_sum, **parts}
    if cfg.lam > 0:
        out["distill"] = distill_sum
    return out


__all__ = ["LossConfig", "dr_loss", "caption_set_loss", "ensemble_probs", "kl_rows", "gather_with_grad",
           "gather_no_grad"]
