"""The distillation loss: Hinton's formula exactly, a teacher that is only ever run, and training that learns
from the teacher's outputs when the labels say nothing."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core.eval.evaluate import accuracy
from core.eval.training import TrainConfig, train
from core.eval.zoo import LeNet300
from core.io import load_model
from core.methods.distill import distillation_loss
from core.progress import run


def test_the_loss_is_the_formula():
    torch.manual_seed(0)
    teacher = torch.nn.Linear(6, 5)
    x, z_s, y = torch.randn(8, 6), torch.randn(8, 5), torch.randint(0, 5, (8,))
    t, alpha = 3.0, 0.7
    with torch.no_grad():
        p_t = torch.softmax(teacher(x) / t, dim=1)
    log_p_s = torch.log_softmax(z_s / t, dim=1)
    kl = (p_t * (p_t.log() - log_p_s)).sum(dim=1).mean()
    ce = -torch.log_softmax(z_s, dim=1)[torch.arange(8), y].mean()
    expected = alpha * t * t * kl + (1 - alpha) * ce
    assert distillation_loss(teacher, t, alpha)(z_s, x, y).item() == pytest.approx(expected.item(), rel=1e-5)
    assert distillation_loss(teacher, t, 0.0)(z_s, x, y).item() == pytest.approx(ce.item(), rel=1e-5)


@pytest.mark.parametrize("temperature, alpha", [(0.0, 0.5), (2.0, 1.5), (2.0, -0.1)])
def test_settings_that_cannot_work_are_refused(temperature, alpha):
    with pytest.raises(ValueError):
        distillation_loss(torch.nn.Linear(2, 2), temperature, alpha)


def test_a_student_learns_from_the_teacher_when_the_labels_are_noise(mnist):
    teacher = load_model("zoo:lenet300").module
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    train_split = mnist.train.subset(3000)
    noise = dataclasses.replace(train_split, labels=torch.randint(0, 10, (len(train_split),), generator=generator))
    config = TrainConfig(epochs=2, lr=0.05, seed=0)
    test = mnist.test.subset(2000)

    torch.manual_seed(0)
    student = LeNet300()
    run(train(student, noise, config, loss=distillation_loss(teacher, temperature=4.0, alpha=1.0)))
    taught = run(accuracy(student, test)).accuracy

    torch.manual_seed(0)
    alone = LeNet300()
    run(train(alone, noise, config))  # cross-entropy against the noise
    assert taught > 0.7 > 0.3 > run(accuracy(alone, test)).accuracy  # 77.7% against 10-ish%
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())  # never trained
    assert all(p.grad is None for p in teacher.parameters())


def test_teacher_logits_computed_once_train_as_the_loss_does(mnist):
    """Without augmentation the teacher runs once per image (with_teacher_logits): the same training."""
    from core.methods.distill import with_teacher_logits

    teacher, data, config = load_model("zoo:lenet300").module, mnist.train.subset(1000), TrainConfig(epochs=1, seed=0)
    torch.manual_seed(0)
    per_batch = LeNet300()
    run(train(per_batch, data, config, loss=distillation_loss(teacher, 3.0, 0.8)))
    torch.manual_seed(0)
    once = LeNet300()
    split, loss = with_teacher_logits(teacher, data, 3.0, 0.8)
    run(train(once, split, config, loss=loss))
    assert all(torch.allclose(p, q, atol=1e-5) for p, q in zip(per_batch.parameters(), once.parameters()))
    assert not torch.equal(per_batch.fc1.weight, LeNet300().fc1.weight)  # it trained
