"""Knowledge distillation (Hinton et al., 2015): a teacher's softened outputs train a student.

The loss for a batch is ``alpha * T**2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(z_s, y)``:
the student's logits ``z_s`` match the teacher's ``z_t`` softened by the temperature ``T`` ("1 is similar
to 7"), and the labels ``y``. ``T**2`` keeps the soft term's gradients on the scale of the hard term's as
``T`` changes. The teacher runs once per batch, in inference mode, and is never trained.

(The ``distill`` step, and the ``distill:`` block of every step that trains, build on this loss.)
"""

from __future__ import annotations

import torch
from torch import nn

from core.eval.training import Loss


def distillation_loss(teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.9) -> Loss:
    """The loss a student trains with to match ``teacher`` at ``temperature``, weighting the soft term by
    ``alpha`` and cross-entropy against the labels by ``1 - alpha``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive; got {temperature!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha!r}")
    teacher.eval()

    def loss(logits: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            target = teacher(inputs)
        soft_target = nn.functional.log_softmax(target.detach().clone() / temperature, dim=1)
        soft = nn.functional.kl_div(nn.functional.log_softmax(logits / temperature, dim=1), soft_target,
                                    reduction="batchmean", log_target=True)
        hard = nn.functional.cross_entropy(logits, labels) if alpha < 1 else logits.new_zeros(())
        return alpha * temperature ** 2 * soft + (1 - alpha) * hard

    return loss
