"""The distillation loss against a hand computation (numpy float64, explicit loops)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mc2export.train.loss import LossConfig, caption_set_loss, dr_loss, ensemble_probs, kl_rows


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _softmax_row(v):
    e = [math.exp(x - max(v)) for x in v]
    return [x / sum(e) for x in e]


def reference(img, txt, s, t_img, t_txt, dims, scales, lam):
    """L_c of one caption set, written out element by element."""
    n = img.shape[0]
    S = [[s * float(np.dot(img[i], txt[j])) for j in range(n)] for i in range(n)]          # image -> text
    St = [[s * float(np.dot(txt[j], img[i])) for i in range(n)] for j in range(n)]         # text -> image
    ce = lambda rows: sum(-math.log(_softmax_row(rows[i])[i]) for i in range(n)) / n  # noqa: E731
    clip = (ce(S) + ce(St)) / 2
    # teachers: softmax per teacher at its own scale, averaged after the softmax
    P, Pt = np.zeros((n, n)), np.zeros((n, n))
    start = 0
    for d, tau in zip(dims, scales):
        u, v = _unit(t_img[:, start:start + d]), _unit(t_txt[:, start:start + d])
        for i in range(n):
            P[i] += _softmax_row([tau * float(np.dot(u[i], v[j])) for j in range(n)])
            Pt[i] += _softmax_row([tau * float(np.dot(v[i], u[j])) for j in range(n)])
        start += d
    P, Pt = P / len(dims), Pt / len(dims)

    def kl(p, rows):
        total = 0.0
        for i in range(n):
            q = _softmax_row(rows[i])
            total += sum(p[i][j] * (math.log(p[i][j]) - math.log(q[j])) for j in range(n) if p[i][j] > 0)
        return total / n

    distill = (kl(P, S) + kl(Pt, St)) / 2
    return (1 - lam) * clip + lam * distill, clip, distill


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    n, d = 5, 6
    dims, scales = (4, 3), (70.0, 20.0)  # two teachers of different widths and temperatures
    out = {"img": _unit(rng.normal(size=(n, d))), "gt": _unit(rng.normal(size=(n, d))),
           "syn": _unit(rng.normal(size=(n, d))), "t_img": rng.normal(size=(n, 7)),
           "t_gt": rng.normal(size=(n, 7)), "t_syn": rng.normal(size=(n, 7)), "dims": dims, "scales": scales}
    out["t_gt"][:, :4] += 2 * out["t_img"][:, :4]  # teachers that (partly) agree with the pairing
    return out


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_loss_matches_hand_computation(batch, lam):
    b = batch
    s = 14.0
    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in b.items() if k not in ("dims", "scales")}
    cfg = LossConfig(lam, b["dims"], b["scales"])
    out = dr_loss(t["img"], {"gt": t["gt"], "syn": t["syn"]}, torch.tensor(s, dtype=torch.float64), cfg,
                  t["t_img"], {"gt": t["t_gt"], "syn": t["t_syn"]})
    want_gt = reference(b["img"], b["gt"], s, b["t_img"], b["t_gt"], b["dims"], b["scales"], lam)
    want_syn = reference(b["img"], b["syn"], s, b["t_img"], b["t_syn"], b["dims"], b["scales"], lam)
    assert out["loss"].item() == pytest.approx(want_gt[0] + want_syn[0], rel=1e-10, abs=1e-12)
    assert out["loss_gt"].item() == pytest.approx(want_gt[0], rel=1e-10, abs=1e-12)
    assert out["clip"].item() == pytest.approx(want_gt[1] + want_syn[1], rel=1e-10)
    if lam > 0:
        assert out["distill"].item() == pytest.approx(want_gt[2] + want_syn[2], rel=1e-10)
    else:
        assert "distill" not in out


def test_directions_and_temperature_matter(batch):
    """Each ingredient changes the value: the text->image term, the per-teacher scale, the ensemble."""
    b = batch
    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in b.items() if k not in ("dims", "scales")}
    s = torch.tensor(10.0, dtype=torch.float64)

    def run(scales=b["scales"], dims=b["dims"]):
        return caption_set_loss(t["img"], t["gt"], t["img"], t["gt"], s, 0, LossConfig(1.0, dims, scales),
                                t["t_img"][:, :sum(dims)], t["t_gt"][:, :sum(dims)],
                                t["t_img"][:, :sum(dims)], t["t_gt"][:, :sum(dims)])["distill"].item()

    base = run()
    assert run(scales=(70.0, 60.0)) != pytest.approx(base)
    assert run(scales=(20.0, 70.0)) != pytest.approx(base)
    assert run(dims=(4,), scales=(70.0,)) != pytest.approx(base)
    # the two directions differ (the teacher matrices are not symmetric)
    u = torch.nn.functional.normalize(t["t_img"][:, :4], dim=-1)
    v = torch.nn.functional.normalize(t["t_gt"][:, :4], dim=-1)
    p = ensemble_probs(t["t_img"][:, :4], t["t_gt"][:, :4], (4,), (70.0,))
    pt = ensemble_probs(t["t_gt"][:, :4], t["t_img"][:, :4], (4,), (70.0,))
    assert torch.allclose(p, torch.softmax(70 * u @ v.T, 1)) and not torch.allclose(p, pt)


def test_kl_is_zero_at_the_teacher_and_equals_apples_cross_entropy_minus_entropy():
    torch.manual_seed(0)
    logits = torch.randn(4, 4, dtype=torch.float64)
    p = torch.softmax(logits, 1)
    assert kl_rows(p, logits).item() == pytest.approx(0.0, abs=1e-12)
    other = torch.randn(4, 4, dtype=torch.float64)
    apple_ce = -(p * torch.log_softmax(other, 1)).sum(1).mean()   # open_clip patch's dist_loss
    entropy = -(p * p.log()).sum(1).mean()
    assert kl_rows(p, other).item() == pytest.approx((apple_ce - entropy).item(), rel=1e-12)


def test_gradient_of_mean_kl_over_teachers_equals_kl_of_the_ensemble():
    """"mean over teachers of KL" and "KL of the averaged softmax" differ by a constant only."""
    torch.manual_seed(1)
    p1, p2 = torch.softmax(torch.randn(3, 3, dtype=torch.float64), 1), torch.softmax(torch.randn(3, 3, dtype=torch.float64), 1)
    s = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    g1 = torch.autograd.grad((kl_rows(p1, s) + kl_rows(p2, s)) / 2, s)[0]
    g2 = torch.autograd.grad(kl_rows((p1 + p2) / 2, s), s)[0]
    assert torch.allclose(g1, g2, atol=1e-12)


def test_lambda_and_teacher_config_are_checked():
    with pytest.raises(ValueError):
        LossConfig(1.5, (4,), (70.0,))
    with pytest.raises(ValueError):
        LossConfig(1.0, (4, 4), (70.0,))
    LossConfig(0.0)  # the CLIP loss alone needs no teachers
