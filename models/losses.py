"""Knowledge-distillation loss (Hinton et al. 2015) with optional pooled hidden-state transfer."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    student_features: torch.Tensor | None = None,
    teacher_features: torch.Tensor | None = None,
    hidden_weight: float = 0.0,
) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels) + w * MSE(features).

    The T^2 factor keeps the soft-target gradients on the same scale as the hard-label ones whatever the
    temperature, so alpha means the same thing at T=1 and T=4.
    """
    soft_student = F.log_softmax(student_logits / temperature, dim=-1)
    soft_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kd = F.kl_div(soft_student, soft_teacher, log_target=True, reduction="batchmean") * temperature**2
    loss = alpha * kd + (1.0 - alpha) * F.cross_entropy(student_logits, labels)
    if hidden_weight > 0 and student_features is not None and teacher_features is not None:
        loss = loss + hidden_weight * F.mse_loss(student_features, teacher_features)
    return loss
