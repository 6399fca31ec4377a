"""The ``reinforce``, ``train`` and ``eval-zeroshot`` commands (registered by :mod:`mc2export.cli`).

Heavy modules (torch, the trainer) are imported inside the commands, so ``mc2export --help`` stays fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import UserError


def _split(values: Optional[List[str]]) -> List[str]:
    """Repeatable options that also take comma-separated lists (a value naming an existing path is kept whole)."""
    out: List[str] = []
    for v in values or []:
        out += [v] if Path(v).exists() else [x.strip() for x in v.split(",") if x.strip()]
    return out


def _floats(text: Optional[str], name: str) -> Optional[List[float]]:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{name} must be comma-separated numbers, got {text!r}") from None


def register(app: typer.Typer, command) -> None:
    @command("reinforce", interrupted="finished shards are kept: run the same command again to resume")
    def reinforce_cmd(
        src: List[str] = typer.Argument(..., help="Image folder (class_name/*.jpg) or webdataset tars with jpg/png + "
                                        "txt: a directory of .tar, files, or a {000..009} pattern."),
        teachers: List[str] = typer.Option(..., "--teachers", "--teacher", "-t",
                                           help="Teacher(s), comma-separated or repeated: VARIANT (hub weights), "
                                           "CHECKPOINT, VARIANT=CHECKPOINT, or module:function. Embeddings are "
                                           "concatenated in this order."),
        out: Path = typer.Option(..., "--out", "-o", help="Output directory (shards + dataset.json)."),
        num_aug: int = typer.Option(10, "--num-aug", min=1, help="Stored augmentations per image (DataCompDR: 10 "
                                    "for 1B, 30 for 12M)."),
        captions: Optional[Path] = typer.Option(None, help="Synthetic captions: JSON {key: [captions]} or JSONL."),
        captioner: Optional[str] = typer.Option(None, help="Synthetic captions from a callable module:function, "
                                                "f(images) or f(images, ground_truth) -> [[captions], ...]."),
        num_syn: Optional[int] = typer.Option(None, "--num-syn", min=1, help="Keep at most N synthetic captions."),
        shard_size: int = typer.Option(1000, min=1, help="Images per shard (image-folder sources)."),
        fmt: str = typer.Option("npz", "--format", help="Embeddings as npz (fp32) or pth.gz (bf16)."),
        images: str = typer.Option("embed", help="embed: store the images in the shards; join: store only the "
                                   "reinforcements (DataCompDR-12M style), joined by key at training time."),
        aug_size: Optional[int] = typer.Option(None, help="Crop size at generation (default: the first teacher's "
                                               "resolution)."),
        crop_scale: Optional[str] = typer.Option(None, help="RandomResizedCrop area range lo,hi (default "
                                                 "0.08,1 as DataCompDR)."),
        rand_augment: bool = typer.Option(True, help="RandAugment (2 ops, magnitude 9) after the crop."),
        teacher_logit_scales: Optional[str] = typer.Option(None, help="Per-teacher logit scales to record, e.g. "
                                                           "70,60 (default: each teacher's own)."),
        batch_size: int = typer.Option(32, min=1, help="Images per step (each x num-aug views per teacher)."),
        seed: int = typer.Option(0, help="Seed of the augmentation draws (with the sample key)."),
        device: str = typer.Option("auto", help="auto (cuda:LOCAL_RANK if available), cpu, cuda:0, ..."),
    ):
        """Reinforce a dataset (DataCompDR format): N stored augmentations per image, the teachers' image
        embeddings of each and text embeddings of every caption, synthetic captions. Sharded and resumable;
        under torchrun rank r makes shards r, r+W, ..."""
        from .reinforce import ReinforceConfig, reinforce

        reinforce(ReinforceConfig(src=list(src), teachers=_split(teachers), out=str(out), num_aug=num_aug,
                                  captions=str(captions) if captions else None, captioner=captioner,
                                  num_syn=num_syn, shard_size=shard_size, emb_format=fmt, images=images,
                                  aug_size=aug_size, crop_scale=_floats(crop_scale, "--crop-scale"),
                                  rand_augment=rand_augment, teacher_scales=_floats(teacher_logit_scales,
                                                                            "--teacher-logit-scales"),
                                  batch_size=batch_size, seed=seed, device=device))

    @command("train", interrupted="the checkpoints written so far are kept: continue with --resume latest")
    def train_cmd(
        data: List[str] = typer.Argument(..., help="Reinforced data (a reinforce --out directory, or DataCompDR "
                                         "tars), or plain image-text tars / an image folder with --lambda 0."),
        out: Path = typer.Option(..., "--out", "-o", help="Run directory: log.jsonl, checkpoints/, "
                                 "model.safetensors, loss.svg."),
        student: Optional[str] = typer.Option(None, help="Student variant (s0, s2, ..., or a registered card id)."),
        student_card: Optional[Path] = typer.Option(None, help="Student card file (a copy of models/*.json, edited)."),
        init: Optional[Path] = typer.Option(None, help="Initial weights (default: random)."),
        steps: int = typer.Option(1000, min=1),
        batch_size: int = typer.Option(64, min=1, help="Per process (global batch = this x processes)."),
        lr: float = typer.Option(1e-3), min_lr: float = typer.Option(0.0),
        warmup: int = typer.Option(100, min=0, help="Linear warm-up steps before the cosine decay."),
        wd: float = typer.Option(0.2, "--wd", help="AdamW weight decay."),
        beta1: float = typer.Option(0.9), beta2: float = typer.Option(0.95), eps: float = typer.Option(1e-6),
        grad_clip: float = typer.Option(1.0, help="Gradient norm clip."),
        lam: float = typer.Option(1.0, "--lambda", help="L = (1-lambda) L_CLIP + lambda L_distill (MobileCLIP2: 1)."),
        captions: str = typer.Option("both", help="both: ground-truth and synthetic-caption batches (summed); "
                                     "gt: ground truth only."),
        teacher_dims: Optional[str] = typer.Option(None, help="Widths of the concatenated teacher embeddings, e.g. "
                                                   "768,768 (default: the data's dataset.json)."),
        teacher_logit_scales: Optional[str] = typer.Option(None, help="Per-teacher logit scales, e.g. 70,60 "
                                                           "(default: the data's dataset.json)."),
        aug_size: Optional[int] = typer.Option(None, help="Generation size of the stored crops (DataCompDR: 224)."),
        crop_scale: Optional[str] = typer.Option(None, help="Plain data: RandomResizedCrop area range lo,hi "
                                                 "(default 0.08,1)."),
        rand_augment: bool = typer.Option(True, help="Plain data: RandAugment after the crop."),
        source: Optional[List[str]] = typer.Option(None, help="Source tars to join images from by key (one per "
                                                   "reinforced shard, same order)."),
        precision: str = typer.Option("auto", help="auto (bf16 autocast on GPU, fp32 on CPU), bf16, fp32."),
        workers: int = typer.Option(2, min=0, help="Data loader processes per training process."),
        save_every: int = typer.Option(100, min=1, help="Checkpoint every N steps (also the data segment length)."),
        keep: int = typer.Option(2, min=1, help="Training checkpoints kept."),
        log_every: int = typer.Option(10, min=1),
        resume: Optional[str] = typer.Option(None, help="'latest' (the newest checkpoint in --out) or a file."),
        seed: int = typer.Option(0),
        shuffle_buffer: int = typer.Option(256, min=1),
        zeroshot: Optional[Path] = typer.Option(None, help="Image folder for a zero-shot check at every checkpoint."),
        zeroshot_templates: str = typer.Option("simple", help="openai, simple or none."),
        device: str = typer.Option("auto"),
    ):
        """Distill a student (MobileCLIP2 recipe): AdamW, cosine schedule, grad clip, bf16 on GPU; DDP under
        torchrun (features gathered across ranks for the loss); atomic checkpoints and --resume latest."""
        from .trainer import TrainConfig, train

        train(TrainConfig(data=list(data), out=str(out), student=student,
                          student_card=str(student_card) if student_card else None,
                          init=str(init) if init else None, steps=steps, batch_size=batch_size, lr=lr,
                          min_lr=min_lr, warmup=warmup, weight_decay=wd, beta1=beta1, beta2=beta2, eps=eps,
                          grad_clip=grad_clip, lam=lam, captions=captions,
                          teacher_dims=[int(x) for x in _floats(teacher_dims, "--teacher-dims")]
                          if teacher_dims else None,
                          teacher_scales=_floats(teacher_logit_scales, "--teacher-logit-scales"),
                          aug_size=aug_size, crop_scale=_floats(crop_scale, "--crop-scale"),
                          rand_augment=rand_augment, source=list(source) if source else None, precision=precision,
                          workers=workers, save_every=save_every, keep=keep, log_every=log_every, resume=resume,
                          seed=seed, shuffle_buffer=shuffle_buffer, zeroshot=str(zeroshot) if zeroshot else None,
                          zeroshot_templates=zeroshot_templates, device=device))

    @command("eval-zeroshot")
    def eval_zeroshot_cmd(
        data: Path = typer.Argument(..., help="Image folder: class_name/*.jpg."),
        variant: Optional[str] = typer.Option(None, "--variant", "-v", help="Variant (default: the checkpoint's)."),
        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="Weights file (e.g. a trained "
                                                  "model.safetensors)."),
        pretrained: bool = typer.Option(False, "--pretrained", help="Use the variant's hub weights."),
        bundle: Optional[Path] = typer.Option(None, "--bundle", help="An exported bundle directory (ONNX or "
                                              "ExecuTorch; Core ML on macOS), run in its own runtime."),
        classnames: Optional[Path] = typer.Option(None, help="Class names: one per line in sorted folder order, or "
                                                  "'folder<TAB>name' lines (default: the folder names)."),
        templates: str = typer.Option("openai", help="Prompt ensemble: openai (80), simple (7), none."),
        batch_size: int = typer.Option(64, min=1),
        limit: Optional[int] = typer.Option(None, min=1, help="Evaluate only the first N images."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the result as JSON."),
    ):
        """Zero-shot top-1 / top-5 accuracy of a model on an image-folder dataset."""
        import json

        from ..options import load_model
        from ..outputs import output_file, outside, write_atomic
        from .data import list_image_folder
        from .evaluate import zeroshot_folder

        if sum(x is not None and x is not False for x in (checkpoint, bundle, pretrained or None)) != 1:
            raise UserError("pass one of --checkpoint FILE (e.g. a trained model.safetensors), --bundle DIR, "
                            "or --pretrained --variant V")
        json_out = output_file(json_out, "--json") if json_out is not None else None
        if json_out is not None and bundle is not None:
            outside(json_out, [bundle], "--json")
        list_image_folder(data)  # a wrong folder fails before the model loads
        if bundle is not None:
            from .evaluate import BundleModel

            model = BundleModel(bundle)
        else:
            model = load_model(variant, checkpoint, pretrained)
        r = zeroshot_folder(model, data, classnames=classnames, templates=templates, batch_size=batch_size,
                            limit=limit, progress=True)
        r["model"] = model.variant
        r["checkpoint"] = str(checkpoint) if checkpoint else str(bundle) if bundle else "pretrained"
        typer.echo(f"{model.variant}: zero-shot top-1 {r['top1']:.4f}, top-5 {r['top5']:.4f} on {r['n']} images "
                   f"of {r['classes']} classes (chance {r['chance']:.4f}; {templates} templates)")
        if json_out:
            write_atomic(json_out, json.dumps(r, indent=1) + "\n")
