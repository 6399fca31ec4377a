"""``mc2export train``: distill a MobileCLIP student from reinforced data (or train it with the CLIP
loss on plain image-text data). One process, or many under ``torchrun`` (DDP; gloo on CPU, nccl on
GPU). Read :func:`train` top to bottom: set-up, data, model, optimizer, then the loop.

Files written to ``--out``:
  log.jsonl               one record per logged step (loss terms, lr, samples/s, skipped data, ...)
  checkpoints/step_N.pt   training state (model, optimizer, step, config) every --save-every steps
  model.safetensors       the student (``mc2export.create_model(checkpoint=...)`` loads it; a custom
                          card travels inside), rewritten at every checkpoint and at the end
  loss.svg                the loss curve (loss.png too when matplotlib is installed)
  config.json             the run's settings

Determinism and resumption: the data of each segment of ``--save-every`` steps is a pure function
of (seed, segment, rank, loader worker) (see :class:`mc2export.train.data.TrainStream`), and
checkpoints are written at segment boundaries, so ``--resume latest`` after a crash replays exactly
the batches the uninterrupted run would have seen (same world size and ``--workers``).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

import torch

from ..errors import UserError
from ..outputs import output_dir, run_folder


@dataclass
class TrainConfig:
    data: List[str]                                  # reinforced data dir / tar shards, or plain tars / image folder
    out: str
    student: Optional[str] = None                    # a variant id / short name
    student_card: Optional[str] = None               # or a card file (a custom, e.g. small, student)
    init: Optional[str] = None                       # start from these weights instead of random ones
    steps: int = 1000
    batch_size: int = 64                             # per process; the global batch is batch_size x world
    lr: float = 1e-3
    min_lr: float = 0.0
    warmup: int = 100
    weight_decay: float = 0.2
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-6
    grad_clip: float = 1.0
    lam: float = 1.0                                 # λ: L = (1-λ) L_CLIP + λ L_distill
    captions: str = "both"                           # "both": ground-truth + synthetic batches; "gt": only the first
    teacher_dims: Optional[List[int]] = None         # default: from the data's dataset.json
    teacher_scales: Optional[List[float]] = None     # default: from the data's dataset.json
    aug_size: Optional[int] = None                   # generation size of stored augmentations (default: manifest, 224)
    crop_scale: Optional[List[float]] = None         # plain data: RandomResizedCrop area range (default 0.08, 1)
    rand_augment: bool = True                        # plain data: RandAugment after the crop
    source: Optional[List[str]] = None               # source shards to join images from (default: manifest)
    precision: str = "auto"                          # auto (bf16 on GPU, fp32 on CPU), bf16, fp32
    workers: int = 2
    save_every: int = 100
    keep: int = 2
    log_every: int = 10
    resume: Optional[str] = None                     # "latest" or a checkpoint file
    seed: int = 0
    shuffle_buffer: int = 256
    zeroshot: Optional[str] = None                   # an image folder evaluated at every checkpoint
    zeroshot_templates: str = "simple"
    device: str = "auto"
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------- distributed
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: str = "auto") -> Dist:
    """Join the process group when started by torchrun (RANK/WORLD_SIZE set); pick the device."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device == "auto":
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, local, dev)


def close_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        dist.barrier()


def all_mean(d: Dist, values: torch.Tensor) -> torch.Tensor:
    if d.enabled:
        import torch.distributed as dist

        values = values.clone()
        dist.all_reduce(values)
        values /= d.world
    return values


def log(d: Dist, msg: str) -> None:
    if d.master:
        print(msg, file=sys.stderr, flush=True)


# -------------------------------------------------------------------------------------------- helpers
def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup`` steps, then cosine decay to ``min_lr`` (open_clip's
    schedule; ``step`` counts from 1)."""
    if step <= cfg.warmup:
        return cfg.lr * step / max(1, cfg.warmup)
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * min(1.0, progress))) * (cfg.lr - cfg.min_lr)


def param_groups(model: torch.nn.Module, weight_decay: float):
    """Weight decay on matrices and conv kernels only (not on gains, biases, norms or the logit scale)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "logit_scale" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def checkpoint_dir(out: str | Path) -> Path:
    return Path(out) / "checkpoints"


def list_checkpoints(out: str | Path) -> List[Path]:
    d = checkpoint_dir(out)
    return sorted(d.glob("step_*.pt")) if d.is_dir() else []


def latest_checkpoint(out: str | Path) -> Optional[Path]:
    found = list_checkpoints(out)
    return found[-1] if found else None


def save_state(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, tmp)
    os.replace(tmp, path)


def truncate_log(path: Path, step: int) -> None:
    """Drop the records after ``step`` (written by a run that died after its last checkpoint)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except ValueError:  # a line torn by the kill
            continue
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(x + "\n" for x in keep), encoding="utf-8")
    os.replace(tmp, path)


def _parse_list(value, cast, name: str):
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    try:
        return [cast(v) for v in value]
    except ValueError:
        raise UserError(f"--{name} must be a comma-separated list of numbers, got {value!r}") from None


# ------------------------------------------------------------------------------------------------ data
def resolve_data(cfg: TrainConfig, student_card: dict):
    """(reader, StreamSpec, description, teacher logit scales) for the run's data (see ``docs/reinforced_data.md``)."""
    from .augment import AugmentConfig
    from .data import Source, StreamSpec, TarReader, expand_shards, read_manifest

    manifest = read_manifest(cfg.data[0]) if len(cfg.data) == 1 else None
    pre = student_card["preprocess"]
    common = dict(batch_size=cfg.batch_size, size=int(pre["resolution"]), mean=tuple(pre["mean"]),
                  std=tuple(pre["std"]), interpolation=pre["interpolation"],
                  context_length=int(student_card["text"]["context_length"]), captions=cfg.captions,
                  shuffle_buffer=cfg.shuffle_buffer, seed=cfg.seed)
    if manifest is not None:
        root = Path(cfg.data[0])
        shards = [str(root / s["name"]) for s in manifest["shards"] if (root / s["name"]).is_file()]
        if not shards:
            raise UserError(f"'{root}' has a dataset.json but no finished shards: run mc2export reinforce to the end")
        sources = cfg.source
        if sources is None and manifest.get("images") == "join":
            sources = [s["source"] for s in manifest["shards"] if (root / s["name"]).is_file()]
        teachers = manifest["teachers"]
        dims = _parse_list(cfg.teacher_dims, int, "teacher-dims") or [t["dim"] for t in teachers]
        scales = _parse_list(cfg.teacher_scales, float, "teacher-logit-scales") or \
            [t["logit_scale"] for t in teachers]
        aug = AugmentConfig.from_dict(manifest["augment"])
        if cfg.aug_size:
            aug = AugmentConfig.from_dict({**aug.to_dict(), "size": cfg.aug_size})
        if cfg.captions == "both" and not manifest.get("num_syn", 1):
            raise UserError(f"'{root}' has no synthetic captions: pass --captions gt, or reinforce it with a "
                            "--captions file or a --captioner")
        reader = TarReader(shards, expand_shards(sources) if sources else None)
        spec = StreamSpec(reinforced=True, aug=aug.to_dict(), teacher_dims=tuple(dims) if cfg.lam > 0 else (),
                          verify_sha256=manifest.get("sha256") == "image bytes", **common)
        return reader, spec, f"{len(shards)} reinforced shards in {root}", scales
    # tars without a manifest: DataCompDR-style if their first sample has paug.json, else plain
    src = Source(cfg.data if len(cfg.data) > 1 else cfg.data[0])
    if src.kind == "folder":
        if cfg.lam > 0:
            raise UserError(f"'{cfg.data[0]}' is an image folder without teacher embeddings: run mc2export "
                            "reinforce on it first, or train with the CLIP loss alone (--lambda 0 --captions gt)")
        if cfg.captions != "gt":
            raise UserError("an image folder has no synthetic captions: pass --captions gt")
        aug = _live_aug(cfg, common)
        return src, StreamSpec(reinforced=False, aug=aug.to_dict(), **common), \
            f"{sum(len(s) for s in src.shards)} images of {len(src.classes)} classes in {cfg.data[0]}", []
    from .data import iter_samples

    first = next(iter_samples(src.shards[0]), {})
    reinforced = "paug.json" in first
    if reinforced:
        dims = _parse_list(cfg.teacher_dims, int, "teacher-dims")
        scales = _parse_list(cfg.teacher_scales, float, "teacher-logit-scales")
        if cfg.lam > 0 and (not dims or not scales):
            raise UserError("these DataCompDR shards have no dataset.json: pass --teacher-dims (e.g. 768,768 for "
                            "DataCompDR's two ViT-L/14 teachers) and --teacher-logit-scales (e.g. 100,100)")
        aug = AugmentConfig(size=cfg.aug_size or 224)
        reader = TarReader(src.shards, expand_shards(cfg.source) if cfg.source else None)
        return reader, StreamSpec(reinforced=True, aug=aug.to_dict(),
                                  teacher_dims=tuple(dims or ()) if cfg.lam > 0 else (),
                                  **common), f"{len(src.shards)} DataCompDR shards", scales or []
    if cfg.lam > 0:
        raise UserError(f"'{cfg.data[0]}' holds no teacher embeddings (no paug.json / npz): run mc2export "
                        "reinforce on it first, or train with the CLIP loss alone (--lambda 0 --captions gt)")
    if cfg.captions != "gt":
        raise UserError("plain image-text shards have no synthetic captions: pass --captions gt")
    aug = _live_aug(cfg, common)
    return TarReader(src.shards), StreamSpec(reinforced=False, aug=aug.to_dict(), **common), \
        f"{len(src.shards)} image-text shards", []


def _live_aug(cfg: TrainConfig, common: dict):
    """The augmentation drawn on the fly for plain (not reinforced) data, at the student's size."""
    from .augment import AugmentConfig

    scale = tuple(_parse_list(cfg.crop_scale, float, "crop-scale") or (0.08, 1.0))
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise UserError(f"--crop-scale must be two numbers 0 < lo <= hi <= 1, got {cfg.crop_scale!r}")
    return AugmentConfig(size=common["size"], interpolation=common["interpolation"], scale=scale,
                         rand_augment=cfg.rand_augment)


# ----------------------------------------------------------------------------------------------- model
def build_student(cfg: TrainConfig, resume_state: Optional[dict]):
    from .. import cards
    from ..factory import create_model
    from ..model import CLIPModel

    if resume_state is not None and resume_state.get("card"):
        card = json.loads(resume_state["card"])
        if not cards.is_builtin(card["id"]):
            cards.register_card(card)
        variant = card["id"]
    elif cfg.student_card:
        variant = cards.load_card_file(cfg.student_card)
    elif cfg.student:
        variant = cards.resolve_variant(cfg.student)
    elif cfg.init:
        variant = None
    else:
        raise UserError("no student: pass --student VARIANT (e.g. s0) or --student-card card.json")
    if cfg.init and resume_state is None:
        model = create_model(variant, checkpoint=cfg.init)
    else:
        model = CLIPModel(variant)
    if model.text is None:
        raise UserError("the student has no text tower (an image-only --init checkpoint?): give a checkpoint "
                        "with both towers")
    if model.folded:
        raise UserError("cannot train a folded model: --init must be an unfolded (train-time) checkpoint")
    return model


def forward_loss(model, batch: dict, loss_cfg, d: Dist, autocast) -> dict:
    """The student's features for one batch and the loss (shared by the trainer and the DDP test)."""
    from .loss import dr_loss

    images = batch["images"].to(d.device, non_blocking=True)
    names = [n for n in ("gt", "syn") if n in batch]
    tokens = torch.cat([batch[n] for n in names]).to(d.device, non_blocking=True)
    with autocast:
        img, txt, scale = model(images, tokens)
    img, txt, scale = img.float(), txt.float(), scale.float()
    b = images.shape[0]
    texts = {n: txt[i * b:(i + 1) * b] for i, n in enumerate(names)}
    t_img = t_texts = None
    if loss_cfg.lam > 0:
        t_img = batch["img_emb"].to(d.device)
        t_texts = {n: batch[f"{n}_emb"].to(d.device) for n in names}
    out = dr_loss(img, texts, scale, loss_cfg, t_img, t_texts, distributed=d.enabled)
    out["logit_scale"] = scale.detach()
    return out


# ----------------------------------------------------------------------------------------------- train
def train(cfg: TrainConfig) -> Path:
    from .. import save_checkpoint
    from .data import batches, merge_stats
    from .loss import LossConfig

    output_dir(cfg.out, "--out")
    check_config(cfg)
    d = init_distributed(cfg.device)
    # one process: a run that fails before its first checkpoint or log record leaves no folder behind
    keep = (lambda out: True) if d.world > 1 else _has_progress
    try:
        with run_folder(cfg.out, keep) as out:
            return _train(cfg, out, d, batches, merge_stats, LossConfig, save_checkpoint)
    finally:
        close_distributed()


def check_config(cfg: TrainConfig) -> None:
    """Every number of the config in its range, before anything is loaded (one line each, exit 2)."""
    def need(ok: bool, what: str, value) -> None:
        if not ok:
            raise UserError(f"{what}, got {value!r}")

    for name in ("steps", "batch_size", "save_every", "log_every", "keep", "shuffle_buffer"):
        need(getattr(cfg, name) >= 1, f"--{name.replace('_', '-')} must be at least 1", getattr(cfg, name))
    need(cfg.warmup >= 0, "--warmup must be 0 or more", cfg.warmup)
    need(cfg.workers >= 0, "--workers must be 0 or more", cfg.workers)
    need(math.isfinite(cfg.lr) and cfg.lr > 0, "--lr must be a positive number, e.g. 1e-3", cfg.lr)
    need(math.isfinite(cfg.min_lr) and 0 <= cfg.min_lr <= cfg.lr, "--min-lr must be within [0, --lr]", cfg.min_lr)
    need(math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0, "--wd must be 0 or more", cfg.weight_decay)
    need(0 <= cfg.beta1 < 1, "--beta1 must be within [0, 1)", cfg.beta1)
    need(0 <= cfg.beta2 < 1, "--beta2 must be within [0, 1)", cfg.beta2)
    need(math.isfinite(cfg.eps) and cfg.eps > 0, "--eps must be a positive number, e.g. 1e-6", cfg.eps)
    need(math.isfinite(cfg.grad_clip) and cfg.grad_clip > 0, "--grad-clip must be a positive number",
         cfg.grad_clip)
    need(0.0 <= cfg.lam <= 1.0, "--lambda must be within [0, 1]", cfg.lam)
    need(cfg.captions in ("both", "gt"), "--captions must be both or gt", cfg.captions)
    need(cfg.precision in ("auto", "bf16", "fp32"), "--precision must be auto, bf16 or fp32", cfg.precision)


def _has_progress(out: Path) -> bool:
    log_path = out / "log.jsonl"
    return bool(list_checkpoints(out)) or (log_path.is_file() and log_path.stat().st_size > 0)


def _train(cfg, out, d, batches, merge_stats, LossConfig, save_checkpoint) -> Path:
    out = Path(out)
    log_path = out / "log.jsonl"
    torch.manual_seed(cfg.seed)

    # ---- resume?
    state, ckpt_path = None, None
    if cfg.resume:
        ckpt_path = latest_checkpoint(out) if cfg.resume == "latest" else Path(cfg.resume)
        if ckpt_path is None:
            log(d, f"no checkpoint in {checkpoint_dir(out)}: starting from step 0")
        elif not ckpt_path.is_file():
            raise UserError(f"checkpoint not found: '{ckpt_path}'")
        else:
            state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            log(d, f"resuming from {ckpt_path} (step {state['step']})")
            if state.get("world_size", d.world) != d.world:
                log(d, f"warning: the checkpoint was written by {state['world_size']} processes, this run has "
                       f"{d.world}: the data order differs from the interrupted run")
    elif list_checkpoints(out):
        raise UserError(f"'{out}' holds checkpoints of an earlier run: pass --resume latest to continue it, "
                        "or choose a new --out")

    # ---- model
    model = build_student(cfg, state)
    card = model.card
    reader, spec, described, scales = resolve_data(cfg, card)
    if cfg.lam > 0 and len(scales) != len(spec.teacher_dims):
        raise UserError(f"{len(spec.teacher_dims)} teacher embedding blocks but "
                        f"{len(scales)} logit scales: give one --teacher-logit-scales value each")
    loss_cfg = LossConfig(cfg.lam, tuple(spec.teacher_dims) if cfg.lam > 0 else (),
                          tuple(scales) if cfg.lam > 0 else ())
    if state is not None:
        model.load_state_dict(state["model"])
    model.to(d.device).train()
    raw_model = model
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)

    # ---- optimizer, precision
    fused = d.device.type == "cuda"
    optimizer = torch.optim.AdamW(param_groups(raw_model, cfg.weight_decay), lr=cfg.lr,
                                  betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                  **({"fused": True} if fused else {"foreach": True}))
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and d.device.type == "cuda"
                                       and torch.cuda.is_bf16_supported())
    autocast = torch.autocast(d.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

    start = int(state["step"]) if state is not None else 0
    if d.master:
        if state is not None:
            truncate_log(log_path, start)
        else:
            log_path.unlink(missing_ok=True)
        (out / "config.json").write_text(json.dumps({**asdict(cfg), "world_size": d.world, "variant": card["id"]},
                                                    indent=1, default=str) + "\n", encoding="utf-8")
    barrier(d)
    from .. import count_parameters

    log(d, f"training {card['id']} ({count_parameters(raw_model) / 1e6:.2f} M parameters) on {described}; "
           f"{d.world} process(es) x batch {cfg.batch_size} on {d.device}, "
           f"{'bf16' if bf16 else 'fp32'}, lambda {cfg.lam}, captions {cfg.captions}, steps {start + 1}..{cfg.steps}")
    if start >= cfg.steps:
        log(d, f"already at step {start} of {cfg.steps}: nothing to do")

    # ---- the loop: segments of save_every steps, each with its own deterministic data stream
    stats_by_worker: dict = {}
    last_good = ckpt_path if state is not None else None
    step, t_log, n_log, data_time = start, time.time(), 0, 0.0
    it = None
    while step < cfg.steps:
        if it is None:  # a new segment (or the resumed one): its own deterministic data stream
            it = batches(reader, spec, step // cfg.save_every, d.rank, cfg.workers)
        step += 1
        t0 = time.time()
        batch = next(it)
        data_time += time.time() - t0
        _stop_together(d, batch.get("error"))
        stats_by_worker[batch.pop("worker")] = json.loads(batch.pop("stats"))
        lr = lr_at(step, cfg)
        for g in optimizer.param_groups:
            g["lr"] = lr

        losses = forward_loss(model, batch, loss_cfg, d, autocast)
        keys = [k for k in ("loss", "clip", "distill", "loss_gt", "loss_syn") if k in losses]
        values = all_mean(d, torch.stack([losses[k].detach().float() for k in keys]
                                         + [losses["logit_scale"]])).cpu()
        if not torch.isfinite(values[0]):
            where = f"'{last_good}'" if last_good else "none (no checkpoint was written before this step)"
            raise UserError(f"the loss is {values[0].item()} at step {step}: training stopped; last good checkpoint: "
                            f"{where}; resume from it with --resume latest, e.g. with a lower --lr, after checking "
                            "the data for NaN/inf embeddings")
        losses["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            raw_model.logit_scale.clamp_(0, math.log(100))
        n_log += 1

        if step % cfg.log_every == 0 or step == cfg.steps:
            dt = time.time() - t_log
            st = _all_stats(d, merge_stats(list(stats_by_worker.values())))
            rec = {"step": step, "lr": lr, **{k: round(v, 6) for k, v in zip(keys, values[:-1].tolist())},
                   "logit_scale": round(values[-1].item(), 4), "grad_norm": round(float(grad_norm), 4),
                   "samples_per_s": round(n_log * cfg.batch_size * d.world / max(dt, 1e-9), 2),
                   "data_wait_s": round(data_time / n_log, 4), "samples_skipped": st["skipped"],
                   "corrupt_shards": st["corrupt_shards"], "time": round(time.time(), 3)}
            if d.master:
                with open(log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(rec) + "\n")
                parts = " ".join(f"{k} {rec[k]:.4f}" for k in keys)
                print(f"step {step}/{cfg.steps} {parts} lr {lr:.2e} {rec['samples_per_s']:.1f} samples/s"
                      + (f" [skipped {st['skipped']} samples, {st['corrupt_shards']} corrupt shards]"
                         if st["skipped"] or st["corrupt_shards"] else ""), file=sys.stderr, flush=True)
            t_log, n_log, data_time = time.time(), 0, 0.0

        if step % cfg.save_every == 0 or step == cfg.steps:
            t_save = time.time()
            if step % cfg.save_every == 0:
                it = None  # ends this segment's loader (and its workers)
            path = checkpoint_dir(out) / f"step_{step:07d}.pt"
            if d.master:
                save_state(path, {"model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                                  "step": step, "rng": torch.get_rng_state(),
                                  "card": json.dumps(card), "config": json.dumps(asdict(cfg), default=str),
                                  "world_size": d.world})
                save_checkpoint(raw_model, out / "model.safetensors")
                for old in list_checkpoints(out)[:-cfg.keep]:
                    old.unlink(missing_ok=True)
                if cfg.zeroshot:
                    _zeroshot(raw_model, cfg, step, log_path)
                write_plot(log_path, out)
            last_good = path
            barrier(d)
            t_log += time.time() - t_save  # samples/s counts training time only

    stats = _all_stats(d, merge_stats(list(stats_by_worker.values())))
    if d.master:
        save_checkpoint(raw_model, out / "model.safetensors")
        write_plot(log_path, out)
        note = ""
        if stats["skipped"] or stats["corrupt_shards"]:
            note = f"; skipped {stats['skipped']} samples and {stats['corrupt_shards']} corrupt shards " \
                   f"({', '.join(f'{k}: {v}' for k, v in stats['reasons'].items())})"
        print(f"done: {out / 'model.safetensors'} (step {step}){note}", file=sys.stderr, flush=True)
    return out / "model.safetensors"


def _stop_together(d: Dist, error: Optional[str]) -> None:
    """Raise on every rank when any rank's data stream failed (a lone rank raising would leave the
    others waiting forever in the next collective)."""
    if d.enabled:
        import torch.distributed as dist

        flag = torch.tensor([1.0 if error else 0.0], device=d.device)  # NCCL reduces GPU tensors only
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and not error:
            raise UserError("another process stopped on a data error (see its message): stopping too")
    if error:
        raise UserError(error if not d.enabled else f"rank {d.rank}: {error}")


def _all_stats(d: Dist, st: dict) -> dict:
    if d.enabled:
        import torch.distributed as dist

        t = torch.tensor([st["skipped"], st["corrupt_shards"], st["samples"], st["shards"]], dtype=torch.float64,
                         device=d.device)
        dist.all_reduce(t)
        t = t.cpu()
        st = dict(st, skipped=int(t[0]), corrupt_shards=int(t[1]), samples=int(t[2]), shards=int(t[3]))
    return st


def _zeroshot(model, cfg: TrainConfig, step: int, log_path: Path) -> None:
    from .evaluate import zeroshot_folder

    was_training = model.training
    model.eval()
    try:
        r = zeroshot_folder(model, cfg.zeroshot, templates=cfg.zeroshot_templates)
    finally:
        model.train(was_training)
    print(f"step {step}: zero-shot top-1 {r['top1']:.4f} on {r['n']} images of {cfg.zeroshot}",
          file=sys.stderr, flush=True)
    with open(log_path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": step, "zeroshot_top1": r["top1"], "zeroshot_top5": r["top5"]}) + "\n")


# ------------------------------------------------------------------------------------------------ plot
def read_log(path: Path) -> List[dict]:
    if not Path(path).is_file():
        return []
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]


def write_plot(log_path: Path, out: Path) -> Optional[Path]:
    """loss.svg (no dependency) and, when matplotlib is installed, loss.png."""
    recs = [r for r in read_log(log_path) if "loss" in r]
    if len(recs) < 2:
        return None
    series = {k: [(r["step"], r[k]) for r in recs if k in r] for k in ("loss", "clip", "distill")}
    series = {k: v for k, v in series.items() if v}
    svg = out / "loss.svg"
    svg.write_text(svg_plot(series, title="training loss"), encoding="utf-8")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        for k, pts in series.items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=k)
        ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.legend()
        fig.tight_layout()
        fig.savefig(out / "loss.png", dpi=100)
        plt.close(fig)
    except ImportError:
        pass  # the SVG is the plot; matplotlib is optional
    return svg


def svg_plot(series: dict, title: str = "", width: int = 640, height: int = 360) -> str:
    """A minimal line chart of ``{name: [(x, y), ...]}`` as SVG text."""
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts if math.isfinite(y)]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys + [0.0]), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    L, R, T, B = 55, 15, 30, 35

    def px(x, y):
        return (L + (x - x0) / (x1 - x0) * (width - L - R), height - B - (y - y0) / (y1 - y0) * (height - T - B))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="11"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="13">{title}</text>',
             f'<line x1="{L}" y1="{height - B}" x2="{width - R}" y2="{height - B}" stroke="black"/>',
             f'<line x1="{L}" y1="{T}" x2="{L}" y2="{height - B}" stroke="black"/>']
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        _, yy = px(x0, yv)
        parts.append(f'<text x="{L - 5}" y="{yy + 4:.1f}" text-anchor="end">{yv:.3g}</text>')
        xv = x0 + (x1 - x0) * i / 4
        xx, _ = px(xv, y0)
        parts.append(f'<text x="{xx:.1f}" y="{height - B + 15}" text-anchor="middle">{xv:.0f}</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 5}" text-anchor="middle">step</text>')
    for i, (name, pts) in enumerate(series.items()):
        c = colors[i % len(colors)]
        path = " ".join(f"{px(x, y)[0]:.1f},{px(x, y)[1]:.1f}" for x, y in pts if math.isfinite(y))
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{path}"/>')
        parts.append(f'<text x="{width - R - 60}" y="{T + 14 * i + 10}" fill="{c}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


__all__ = ["TrainConfig", "train", "forward_loss", "init_distributed", "close_distributed", "lr_at",
           "latest_checkpoint", "read_log", "write_plot", "svg_plot", "Dist", "param_groups"]
