"""Data sets: the shipped MNIST, Fashion-MNIST from Debian, and a user's IDX folder, .npz and image folder."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from core.eval import data as data_module
from core.eval.data import DataError, dataset_available, load_dataset, load_idx_folder, load_image_folder, load_npz, \
    read_idx


def write_idx(path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def small_arrays(n_train=60, n_test=12, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n_train, 8, 8), dtype=np.uint8), rng.integers(0, 3, n_train, dtype=np.uint8),
            rng.integers(0, 256, (n_test, 8, 8), dtype=np.uint8), rng.integers(0, 3, n_test, dtype=np.uint8))


def test_full_mnist_is_shipped_with_disjoint_splits(mnist):
    assert (len(mnist.train), len(mnist.val), len(mnist.test)) == (55_000, 5_000, 10_000)
    assert mnist.input_shape == (1, 28, 28) and mnist.classes == tuple("0123456789")
    assert mnist.train.images.dtype == torch.uint8
    # every digit is there in every split, roughly a tenth each
    for split in (mnist.train, mnist.val, mnist.test):
        counts = torch.bincount(split.labels, minlength=10).float() / len(split)
        assert counts.min() > 0.08 and counts.max() < 0.12
    # the test split is MNIST's own t10k file, known by its first labels
    assert mnist.test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_validation_is_held_out_of_training(mnist):
    train = {img.numpy().tobytes() for img in mnist.train.images}
    in_train = sum(img.numpy().tobytes() in train for img in mnist.val.images)
    assert in_train <= 5  # held out; MNIST itself repeats a handful of images


def test_batches_are_scaled_floats(mnist):
    x, y = next(mnist.test.batches(64))
    assert x.dtype == torch.float32 and x.shape == (64, 1, 28, 28) and y.shape == (64,)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) > 0.9
    shuffled = next(mnist.test.batches(64, shuffle=True, seed=3))[1]
    assert not torch.equal(shuffled, y)
    assert sum(len(b[1]) for b in mnist.test.batches(300, limit=1000)) == 1000


def test_read_idx_plain_and_gzipped(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for compress in (False, True):
        path = tmp_path / ("a.idx.gz" if compress else "a.idx")
        write_idx(path, array, compress)
        np.testing.assert_array_equal(read_idx(path), array)


@pytest.mark.parametrize("payload, message", [(b"\x01\x02\x03", "not an IDX file"),
                                              (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
                                              (b"\x00\x00\x08\x01\x00\x00\x00\x05abc", "IDX header says 13 bytes for shape \\(5,\\), file has 11")])
def test_read_idx_rejects_bad_files(tmp_path, payload, message):
    path = tmp_path / "bad-idx"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=message):
        read_idx(path)


def test_idx_folder_loader(tmp_path):
    x_tr, y_tr, x_te, y_te = small_arrays()
    for name, arr in (("train-images-idx3-ubyte.gz", x_tr), ("train-labels-idx1-ubyte.gz", y_tr),
                      ("t10k-images-idx3-ubyte.gz", x_te), ("t10k-labels-idx1-ubyte.gz", y_te)):
        write_idx(tmp_path / name, arr, compress=True)
    ds = load_dataset(str(tmp_path))
    assert ds.input_shape == (1, 8, 8) and ds.classes == ("0", "1", "2")
    assert len(ds.train) + len(ds.val) == 60 and len(ds.test) == 12
    np.testing.assert_array_equal(ds.test.images[:, 0].numpy(), x_te)


def test_idx_folder_missing_files(tmp_path):
    x_tr, y_tr, _, _ = small_arrays()
    write_idx(tmp_path / "train-images-idx3-ubyte", x_tr)
    with pytest.raises(DataError, match="no IDX file for train labels, test images, test labels"):
        load_idx_folder(tmp_path)


def test_npz_loader_both_layouts(tmp_path):
    x_tr, y_tr, x_te, y_te = small_arrays()
    np.savez(tmp_path / "split.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    ds = load_npz(tmp_path / "split.npz")
    assert len(ds.test) == 12 and ds.input_shape == (1, 8, 8)
    np.savez(tmp_path / "flat.npz", x=np.concatenate([x_tr, x_te])[..., None], y=np.concatenate([y_tr, y_te]))
    ds = load_dataset(str(tmp_path / "flat.npz"))
    assert len(ds.test) == 12 and len(ds.train) + len(ds.val) == 60 and ds.input_shape == (1, 8, 8)


def test_npz_loader_refuses_pickles_and_wrong_keys(tmp_path):
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(DataError, match="cannot read as .npz"):
        load_npz(tmp_path / "objects.npz")
    np.savez(tmp_path / "keys.npz", images=np.zeros((3, 4, 4)))
    with pytest.raises(DataError, match=r"needs arrays x_train.*found \['images'\]"):
        load_npz(tmp_path / "keys.npz")
    np.savez(tmp_path / "lengths.npz", x=np.zeros((6, 4, 4), np.uint8), y=np.zeros(5, np.int64))
    with pytest.raises(DataError, match="5 labels"):
        load_npz(tmp_path / "lengths.npz")


def test_image_folder_loader(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 3)):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (10, 10), dtype=np.uint8)).save(folder / f"{i}.png")
    ds = load_image_folder(tmp_path)
    assert ds.classes == ("cat", "dog") and len(ds.test) == 6 and ds.input_shape == (1, 10, 10)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "train" / "dog" / "odd.png")
    with pytest.raises(DataError, match="odd.png: image is"):
        load_image_folder(tmp_path)


def test_unknown_data_set_names_the_choices(tmp_path):
    with pytest.raises(DataError, match="not one of mnist, fashion-mnist"):
        load_dataset("imagenet")
    (tmp_path / "a.csv").write_text("1,2")
    with pytest.raises(DataError, match="must be .npz"):
        load_dataset(str(tmp_path / "a.csv"))


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNESCOPE_FASHION_MNIST", str(tmp_path / "nowhere"))
    load_dataset.cache_clear()
    try:
        assert not dataset_available("fashion-mnist")
        with pytest.raises(DataError, match="apt install dataset-fashion-mnist"):
            load_dataset("fashion-mnist")
    finally:
        load_dataset.cache_clear()


@pytest.mark.skipif(not dataset_available("fashion-mnist"),
                    reason="Fashion-MNIST not installed (apt install dataset-fashion-mnist)")
def test_fashion_mnist_from_debian():
    ds = load_dataset("fashion-mnist")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (55_000, 5_000, 10_000)
    assert ds.classes == data_module.FASHION_CLASSES


def test_float_batches_are_copies(tmp_path):
    """A model that changes its input in place must not change the (cached) data set."""
    x = np.random.default_rng(0).random((40, 4, 4), dtype=np.float32) - 0.5
    np.savez(tmp_path / "floats.npz", x=x, y=np.zeros(40, np.int64))
    ds = load_dataset(str(tmp_path / "floats.npz"))
    before = ds.test.images.clone()
    for batch, _ in ds.test.batches(8):
        torch.relu_(batch)
    assert torch.equal(load_dataset(str(tmp_path / "floats.npz")).test.images, before)
