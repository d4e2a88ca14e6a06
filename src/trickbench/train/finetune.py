"""Fine-tuning (`train.finetune_from`, `train.finetune_mode`): the earlier run's weights, loaded into a fresh
network, the parameters the mode freezes, and the feature blocks that then stay in evaluation mode."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from trickbench.errors import DataError
from trickbench.nn.models import HEAD_PREFIX, apply_finetune, load_backbone

def finetune_source(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict that `train.finetune_from` names (the model.pt of an earlier run).

    A missing or unusable file is bad input: DataError, one line naming the key and the path.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"train.finetune_from: {path}: no such file; expected the model.pt of an earlier run")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, not a torch file, or not a plain state dict
        raise DataError(f"train.finetune_from: {path}: not a readable model.pt ({type(error).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"train.finetune_from: {path}: expected a state dict of tensors (a run's model.pt)")
    return state


def frozen_blocks(model: nn.Module) -> list[nn.Module]:
    """Feature blocks whose parameters fine-tuning froze entirely (finetune_mode linear or top).

    They stay in evaluation mode while the rest trains: their batch-norm statistics stay the
    checkpoint's and their dropout is off, so the trained part sees fixed features (the seed's linear
    classifier on the features of a pre-trained model).
    """
    return [block for block in model.blocks.children()
            if any(True for _ in block.parameters()) and not any(p.requires_grad for p in block.parameters())]


def train_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    model.train()
    for block in frozen:
        block.eval()


def load_finetune(model: nn.Module, config: dict[str, Any], source: dict[str, torch.Tensor] | None) -> list[nn.Module]:
    """Load the feature blocks of `source` (train.finetune_from's state dict) into `model`, never its head,
    and apply `finetune_mode`; the blocks that fine-tuning froze (none without a source)."""
    if source is None:
        return []
    # The head is the source task's classifier: its outputs mean the source's classes, even where their count
    # matches the new task's (CIFAR-10 classes 0-4 against 5-9), so it keeps its fresh init, as the seed's
    # fine-tuning replaces the last layer. Loaded, its confident wrong logits send gradients that wreck a
    # fully fine-tuned backbone (seed-transfer-small's first runs, 908f790: full fine-tuning fell to chance).
    backbone = {name: tensor for name, tensor in source.items() if not name.startswith(HEAD_PREFIX)}
    try:
        load_backbone(model, backbone)
    except ValueError as error:  # nothing matches: another architecture or width
        raise DataError(f"train.finetune_from: {config['finetune_from']}: {error}") from None
    apply_finetune(model, config["finetune_mode"])
    return frozen_blocks(model)
