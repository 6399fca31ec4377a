"""Multi-modal reinforced training (MobileCLIP / MobileCLIP2): reinforced data in Apple's DataCompDR
format, a distillation trainer (one process or DDP under torchrun) and zero-shot evaluation.

Modules: :mod:`.augment` (replayable RandomResizedCrop + RandAugment, PIL only), :mod:`.data` (webdataset
tars with ``tarfile``, the training stream), :mod:`.loss` (L = (1-λ) L_CLIP + λ L_distill),
:mod:`.reinforce`, :mod:`.trainer`, :mod:`.evaluate`, :mod:`.commands` (the CLI). Nothing heavy is
imported here. Docs: ``docs/reinforced_data.md``, ``docs/training.md``.
"""
