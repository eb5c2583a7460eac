"""The distillation loss: soft targets, hard labels and hidden-state transfer, each doing its job."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

from models.losses import distillation_loss


def test_alpha_zero_is_plain_cross_entropy() -> None:
    student, teacher = torch.randn(8, 5), torch.randn(8, 5)
    labels = torch.randint(0, 5, (8,))
    loss = distillation_loss(student, teacher, labels, temperature=3.0, alpha=0.0)
    assert torch.allclose(loss, F.cross_entropy(student, labels))


def test_soft_term_vanishes_when_student_equals_teacher() -> None:
    logits = torch.randn(8, 5)
    loss = distillation_loss(logits, logits.clone(), torch.zeros(8, dtype=torch.long), temperature=2.0, alpha=1.0)
    assert loss.abs().item() < 1e-6


def test_temperature_squared_scaling_keeps_gradient_scale() -> None:
    torch.manual_seed(0)
    teacher = torch.randn(64, 10) * 3
    grads = []
    for temperature in (1.0, 4.0):
        student = torch.randn(64, 10, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        distillation_loss(student, teacher, torch.zeros(64, dtype=torch.long), temperature, alpha=1.0).backward()
        assert student.grad is not None
        grads.append(student.grad.norm().item())
    # Without the T^2 factor the T=4 gradient would be ~16x smaller; with it, same order of magnitude.
    assert 0.1 < grads[1] / grads[0] < 10


def test_gradient_moves_student_towards_teacher() -> None:
    teacher = torch.tensor([[4.0, 0.0, -4.0]])
    student = torch.zeros(1, 3, requires_grad=True)
    optimizer = torch.optim.SGD([student], lr=1.0)
    before = F.kl_div(F.log_softmax(student, -1), F.log_softmax(teacher, -1), log_target=True, reduction="sum")
    for _ in range(20):
        optimizer.zero_grad()
        distillation_loss(student, teacher, torch.tensor([0]), temperature=2.0, alpha=1.0).backward()
        optimizer.step()
    after = F.kl_div(F.log_softmax(student, -1), F.log_softmax(teacher, -1), log_target=True, reduction="sum")
    assert after < before / 10
    assert student.argmax().item() == 0


def test_hidden_weight_adds_feature_mse() -> None:
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    s_feat, t_feat = torch.zeros(4, 6), torch.ones(4, 6)
    base = distillation_loss(logits, logits, labels, 2.0, 0.5)
    with_hidden = distillation_loss(logits, logits, labels, 2.0, 0.5, s_feat, t_feat, hidden_weight=0.5)
    assert torch.allclose(with_hidden - base, torch.tensor(0.5))
