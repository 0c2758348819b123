"""Offline classification data sets: the shipped MNIST, Debian's Fashion-MNIST, and a user's own data.

A data set is held in memory as uint8 (or float32) image tensors, shaped ``(N, C, H, W)``, with int64
labels. ``Split.batches`` yields float32 batches scaled to [0, 1], the input every zoo model expects.
The training images are split once, with a fixed seed, into train and validation parts; the test split
is never touched by training or tuning.

Formats read (by :func:`load_dataset`):
- ``mnist``: the full MNIST shipped under ``resources/data/mnist``;
- ``fashion-mnist``: the IDX files of Debian's ``dataset-fashion-mnist`` package (or the folder named by
  ``$PRUNESCOPE_FASHION_MNIST``);
- a folder of IDX files (``train-images-idx3-ubyte[.gz]`` and friends);
- an ``.npz`` file with ``x_train``/``y_train``/``x_test``/``y_test`` (or just ``x``/``y``), read without
  pickles;
- a folder of images, one subfolder per class (optionally under ``train/`` and ``test/``).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.errors import PrunescopeError, one_line
from core.fileio import GB, check_input
from core.resources import resource_path

MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot")
FASHION_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_HELP = ("Fashion-MNIST is not installed. On Debian or Ubuntu: `sudo apt install "
                "dataset-fashion-mnist` (it goes to /usr/share/datasets/fashion-mnist); elsewhere, put the four "
                "IDX files from https://github.com/zalando-research/fashion-mnist in a folder and set "
                "PRUNESCOPE_FASHION_MNIST to it.")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class DataError(PrunescopeError):
    """A data set could not be found or read; the message says why and what to do."""


@dataclass(frozen=True)
class Split:
    """Images ``(N, C, H, W)`` (uint8 0-255, or float32 already scaled) and int64 labels ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batches(self, batch_size: int = 256, shuffle: bool = False, seed: int = 0,
                limit: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)``: ``x`` float32 ``(B, C, H, W)`` in [0, 1], ``y`` int64 ``(B,)``.

        ``limit`` caps the number of examples; ``shuffle`` uses a generator seeded with ``seed``.
        """
        n = len(self) if limit is None else min(limit, len(self))
        order = None
        if shuffle:
            order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        for start in range(0, n, batch_size):
            idx = slice(start, min(n, start + batch_size)) if order is None else order[start:start + batch_size]
            yield to_float(self.images[idx]), self.labels[idx]

    def subset(self, count: int) -> Split:
        """The first ``count`` examples (a view, not a copy)."""
        return Split(self.images[:count], self.labels[:count])


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 0-255 images to float32 in [0, 1]; float images pass through."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images.to(torch.float32, copy=True)  # a copy: a model may change its input in place


@dataclass(frozen=True)
class Dataset:
    """A labelled image classification data set with train, validation and test splits."""

    name: str
    classes: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    source: str
    spec: str = ""  # what load_dataset was given, to load it again

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, ``(C, H, W)``."""
        return tuple(self.test.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# --------------------------------------------------------------------------------------------- IDX files

def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a numpy array, checking its header against its size."""
    path = Path(path)
    check_input(path, MAX_DATA_BYTES, "IDX file", error=DataError)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read(4)
            raw += f.read(4 * raw[3]) if len(raw) == 4 else b""
            if len(raw) >= 4 and len(raw) == 4 + 4 * raw[3] and raw[2] in _IDX_DTYPES:  # the size it says, first
                size = int(np.prod(struct.unpack(f">{raw[3]}I", raw[4:]), dtype=np.float64))
                if size * np.dtype(_IDX_DTYPES[raw[2]]).itemsize > MAX_DATA_BYTES:
                    raise DataError(one_line(f"{path}: IDX header says {size:,} values, more than Prunescope "
                                             f"reads ({MAX_DATA_BYTES >> 30} GB)"))
            raw += f.read(MAX_DATA_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path}: IDX header says {expected} bytes for shape {dims}, file has {len(raw)}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find_idx(folder: Path, kind: str, test: bool) -> Path | None:
    prefixes = ("t10k", "test") if test else ("train",)
    for entry in sorted(folder.iterdir()):
        name = entry.name.lower()
        if name.startswith(prefixes) and kind in name and "idx" in name:
            return entry
    return None


def load_idx_folder(folder: str | os.PathLike, name: str | None = None,
                    classes: tuple[str, ...] | None = None, val_size: int = 5000, seed: int = 0) -> Dataset:
    """Read a folder holding train/test images and labels as IDX files."""
    folder = Path(folder)
    found = {(kind, test): _find_idx(folder, kind, test) for test in (False, True) for kind in ("images", "labels")}
    missing = [f"{'test' if t else 'train'} {k}" for (k, t), p in found.items() if p is None]
    if missing:
        raise DataError(f"{folder}: no IDX file for {', '.join(missing)} "
                        "(expected names like train-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz)")
    arrays = {key: read_idx(path) for key, path in found.items()}
    x_train, y_train = arrays[("images", False)], arrays[("labels", False)]
    x_test, y_test = arrays[("images", True)], arrays[("labels", True)]
    return _make_dataset(name or folder.name, x_train, y_train, x_test, y_test, classes, str(folder),
                         val_size, seed)


# --------------------------------------------------------------------------------------------- helpers

def _as_nchw(x: np.ndarray, what: str) -> torch.Tensor:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    elif x.ndim not in (2, 4):
        raise DataError(f"{what}: images must be (N, H, W), (N, H, W, C) or (N, C, H, W); got shape {x.shape}")
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x))
    if np.issubdtype(x.dtype, np.floating):
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if np.issubdtype(x.dtype, np.integer) and x.min() >= 0 and x.max() <= 255:
        return torch.from_numpy(x.astype(np.uint8))
    raise DataError(f"{what}: images must be uint8 (0-255) or floats; got {x.dtype}")


def _as_labels(y: np.ndarray, n: int, what: str) -> torch.Tensor:
    y = np.asarray(y).reshape(-1)
    if y.shape[0] != n:
        raise DataError(f"{what}: {n} images but {y.shape[0]} labels")
    if not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise DataError(f"{what}: labels must be non-negative integers; got {y.dtype}")
    return torch.from_numpy(y.astype(np.int64))


def _make_dataset(name: str, x_train, y_train, x_test, y_test, classes, source: str,
                  val_size: int, seed: int) -> Dataset:
    images = _as_nchw(np.asarray(x_train), f"{source} (train)")
    labels = _as_labels(y_train, images.shape[0], f"{source} (train)")
    test_images = _as_nchw(np.asarray(x_test), f"{source} (test)")
    test = Split(test_images, _as_labels(y_test, test_images.shape[0], f"{source} (test)"))
    if images.shape[1:] != test.images.shape[1:]:
        raise DataError(f"{source}: train images are {tuple(images.shape[1:])}, test images "
                        f"{tuple(test.images.shape[1:])}")
    n_classes = int(max(labels.max().item() if len(labels) else 0,
                        test.labels.max().item() if len(test.labels) else 0)) + 1
    if classes is None:
        classes = tuple(str(i) for i in range(n_classes))
    elif len(classes) < n_classes:
        raise DataError(f"{source}: labels go up to {n_classes - 1} but only {len(classes)} classes are named")
    val_size = min(val_size, images.shape[0] // 5)
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:val_size].sort().values, order[val_size:].sort().values
    return Dataset(name, tuple(classes), Split(images[train_idx], labels[train_idx]),
                   Split(images[val_idx], labels[val_idx]), test, source)


def load_npz(path: str | os.PathLike, val_size: int = 5000, seed: int = 0) -> Dataset:
    """Read ``x_train, y_train, x_test, y_test`` (or ``x, y``, split 5:1 with a fixed seed) from an npz."""
    path = Path(path)
    check_input(path, MAX_DATA_BYTES, "data set", error=DataError)
    try:
        with zipfile.ZipFile(path) as archive:  # what the arrays will take, before any is read
            declared = sum(info.file_size for info in archive.infolist())
        if declared > MAX_DATA_BYTES:
            raise DataError(f"{one_line(str(path))}: its arrays would take {declared / (1 << 30):.1f} GB; "
                            f"Prunescope reads data sets of up to {MAX_DATA_BYTES >> 30} GB")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError) as exc:
        raise DataError(one_line(f"{path}: cannot read as .npz ({str(exc)[:200]})")) from None
    classes = tuple(str(c) for c in arrays["classes"]) if "classes" in arrays else None
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        return _make_dataset(path.stem, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                             classes, str(path), val_size, seed)
    if {"x", "y"} <= arrays.keys():
        x, y = arrays["x"], arrays["y"]
        if len(x) != len(y):
            raise DataError(f"{path}: {len(x)} images but {len(y)} labels")
        order = np.random.default_rng(seed).permutation(len(x))
        cut = len(x) - max(1, len(x) // 6)
        tr, te = np.sort(order[:cut]), np.sort(order[cut:])
        return _make_dataset(path.stem, x[tr], y[tr], x[te], y[te], classes, str(path), val_size, seed)
    raise DataError(f"{path}: an .npz data set needs arrays x_train, y_train, x_test, y_test (or x, y); "
                    f"found {sorted(arrays)}")


def read_image(file: Path) -> np.ndarray:
    """One image file as an (H, W) grey or (H, W, 3) RGB uint8 array; :class:`DataError` if it is not one."""
    from PIL import Image, UnidentifiedImageError

    check_input(file, MAX_IMAGE_BYTES, "image", error=DataError)
    try:
        with Image.open(file) as img:
            return np.asarray(img.convert("L" if img.mode in ("L", "1", "P", "I;16") else "RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{file}: cannot read image ({exc})") from exc


def image_tensor(images: list[np.ndarray], what: str) -> torch.Tensor:
    """Same-size images stacked as an (N, C, H, W) uint8 tensor."""
    return _as_nchw(np.stack(images), what)


def _read_image_classes(root: Path, classes: list[str] | None = None):
    if classes is None:
        classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    images, labels, shape = [], [], None
    for label, cls in enumerate(classes):
        folder = root / cls
        if not folder.is_dir():
            continue
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            arr = read_image(file)
            if shape is None:
                shape = arr.shape
            if arr.shape != shape:
                raise DataError(f"{file}: image is {arr.shape}, the others are {shape}; resize them to one size")
            images.append(arr)
            labels.append(label)
    if not images:
        raise DataError(f"{root}: no images found (expected one subfolder per class holding image files)")
    return np.stack(images), np.array(labels), classes


def load_image_folder(root: str | os.PathLike, val_size: int = 5000, seed: int = 0) -> Dataset:
    """Read ``root/<class>/*.png`` (or ``root/train/<class>`` and ``root/test/<class>``)."""
    root = Path(root)
    if (root / "train").is_dir() and (root / "test").is_dir():
        x_tr, y_tr, classes = _read_image_classes(root / "train")
        x_te, y_te, _ = _read_image_classes(root / "test", classes)
        return _make_dataset(root.name, x_tr, y_tr, x_te, y_te, tuple(classes), str(root), val_size, seed)
    x, y, classes = _read_image_classes(root)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = len(x) - max(1, len(x) // 6)
    tr, te = np.sort(order[:cut]), np.sort(order[cut:])
    return _make_dataset(root.name, x[tr], y[tr], x[te], y[te], tuple(classes), str(root), val_size, seed)


# --------------------------------------------------------------------------------------------- entry point

BUILTIN_DATASETS = ("mnist", "fashion-mnist")
MAX_DATA_BYTES = 8 * GB
MAX_IMAGE_BYTES = 256 << 20
_ALIASES = {"mnist": "mnist", "fashion-mnist": "fashion-mnist", "fashion_mnist": "fashion-mnist",
            "fashion": "fashion-mnist", "fmnist": "fashion-mnist"}


def fashion_mnist_dir() -> Path:
    return Path(os.environ.get("PRUNESCOPE_FASHION_MNIST", FASHION_DEFAULT_DIR))


def dataset_available(name: str) -> bool:
    """Whether :func:`load_dataset` can find the built-in data set ``name`` without reading it."""
    canonical = _ALIASES.get(name.lower())
    if canonical == "mnist":
        return True
    if canonical == "fashion-mnist":
        folder = fashion_mnist_dir()
        return folder.is_dir() and _find_idx(folder, "images", True) is not None
    return Path(name).exists()


@functools.lru_cache(maxsize=4)
def load_dataset(spec: str, val_size: int = 5000, seed: int = 0) -> Dataset:
    """Load a data set by name (``mnist``, ``fashion-mnist``) or path (IDX folder, image folder, .npz).

    Results are cached: the splits are shared, read-only tensors; copy before changing them.
    """
    return dataclasses.replace(_load_dataset(spec, val_size, seed), spec=spec)


def _load_dataset(spec: str, val_size: int, seed: int) -> Dataset:
    canonical = _ALIASES.get(spec.lower())
    if canonical == "mnist":
        return load_idx_folder(resource_path("data", "mnist"), "mnist", MNIST_CLASSES, val_size, seed)
    if canonical == "fashion-mnist":
        folder = fashion_mnist_dir()
        if not folder.is_dir() or _find_idx(folder, "images", True) is None:
            raise DataError(f"{FASHION_HELP} (looked in {folder})")
        return load_idx_folder(folder, "fashion-mnist", FASHION_CLASSES, val_size, seed)
    path = Path(spec).expanduser()
    if not os.path.lexists(path):
        raise DataError(one_line(f"unknown data set {spec!r}: not one of {', '.join(BUILTIN_DATASETS)} and no "
                                 "such file or folder"))
    check_input(path, MAX_DATA_BYTES, "data set", folder_ok=True, error=DataError)
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return load_npz(path, val_size, seed)
        raise DataError(f"{path}: a data set file must be .npz; folders of IDX files or images also work")
    entries = list(path.iterdir())
    if any("idx" in e.name.lower() for e in entries if e.is_file()):
        return load_idx_folder(path, val_size=val_size, seed=seed)
    if any(e.is_dir() for e in entries):
        return load_image_folder(path, val_size, seed)
    raise DataError(f"{path}: holds neither IDX files nor one subfolder of images per class")
