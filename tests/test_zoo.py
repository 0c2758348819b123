"""The zoo: exact architectures, shipped checkpoints that load fast and keep their recorded accuracy."""

from __future__ import annotations

import time

import pytest
import torch

from core.eval import zoo
from core.eval.data import dataset_available, load_dataset
from core.eval.evaluate import accuracy
from core.progress import run
from core.eval.training import TrainConfig, random_shift, train


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_architectures_match_deep_compression():
    assert n_params(zoo.LeNet300()) == 266_610
    lenet5 = zoo.LeNet5()
    assert n_params(lenet5) == 431_080
    assert [tuple(p.shape) for n, p in lenet5.named_parameters() if n.endswith("weight")] == [
        (20, 1, 5, 5), (50, 20, 5, 5), (500, 800), (10, 500)]
    resnet = zoo.ResNet8()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in resnet.modules())
    assert resnet(torch.rand(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_every_checkpoint_loads_fast_and_safely(name):
    start = time.perf_counter()
    model, meta = zoo.load_zoo_model(name)
    assert time.perf_counter() - start < 1.0  # "well under a second"; a load, not a benchmark
    assert meta["name"] == name and not model.training
    assert meta["train"]["seed"] == 0 and meta["train"]["epochs"] == zoo.ZOO[name].epochs


@pytest.mark.parametrize("name, minimum", [("lenet300", 0.982), ("lenet5", 0.990)])
def test_mnist_checkpoints_reach_the_paper_baselines(mnist, name, minimum):
    model, meta = zoo.load_zoo_model(name)
    measured = run(accuracy(model, mnist.test))
    assert measured.count == 10_000
    assert measured.accuracy == pytest.approx(meta["test_accuracy"], abs=1e-9)
    assert measured.accuracy >= minimum


@pytest.mark.skipif(not dataset_available("fashion-mnist"), reason="Fashion-MNIST not installed")
@pytest.mark.parametrize("name, minimum", [("lenet300-fashion", 0.88), ("lenet5-fashion", 0.90),
                                           ("resnet8-fashion", 0.90)])
def test_fashion_checkpoints_keep_their_recorded_accuracy(name, minimum):
    model, meta = zoo.load_zoo_model(name)
    measured = run(accuracy(model, load_dataset("fashion-mnist").test))
    assert measured.accuracy == pytest.approx(meta["test_accuracy"], abs=1e-9) and measured.accuracy >= minimum


def test_unknown_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(zoo.ZooError, match="unknown zoo model"):
        zoo.zoo_entry("alexnet")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(zoo.ZooError, match="unreadable checkpoint"):
        zoo.read_checkpoint(bad)
    torch.save({"hello": torch.zeros(1)}, bad)
    with pytest.raises(zoo.ZooError, match="not a Prunescope checkpoint"):
        zoo.read_checkpoint(bad)
    with pytest.raises(zoo.ZooError, match="train-zoo"):
        zoo.read_checkpoint(tmp_path / "absent.pt")


def test_training_is_deterministic(mnist):
    subset = mnist.train.subset(2048)
    weights = []
    for global_seed in (123, 456):
        torch.manual_seed(0)
        model = zoo.LeNet300()
        torch.manual_seed(global_seed)  # the config's seed must win over whatever the global state was
        losses = run(train(model, subset, TrainConfig(epochs=1, augment=True, seed=0)))
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        assert losses[0] < 2.3
    assert torch.equal(weights[0], weights[1])


def test_random_shift_moves_whole_pixels():
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 4, 4] = 1.0
    shifted = random_shift(image.repeat(50, 1, 1, 1), 2, torch.Generator().manual_seed(0))
    rows, cols = torch.nonzero(shifted[:, 0], as_tuple=True)[1:]
    assert shifted.sum() == 50 and rows.min() >= 2 and rows.max() <= 6 and cols.min() >= 2 and cols.max() <= 6
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 5
