"""Shared settings of the benchmark suite."""
import pytest
import torch

from benchmark import registry
from benchmark.api import UsageError
from benchmark.engine import load_task_data


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Every benchmark runs on one torch thread, as each run of the matrix does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


PAPER_SHAPE = dict(n=51, f=24, batch_size=83, momentum=0.9, past_window=150, clip=2.0)
SYNTHETIC_TASK = '''
import torch
from benchmark.api import Task, TaskData

def load(data_dir=None):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(10_000, 784, generator=generator)
    targets = torch.randint(0, 10, (10_000,), generator=generator)
    return TaskData(inputs, targets, inputs[:1000], targets[:1000], num_classes=10)

def model():
    return torch.nn.Sequential(torch.nn.Linear(784, 100), torch.nn.ReLU(),
                               torch.nn.Linear(100, 10))

task = Task(name="mnist-shape", load=load, model=model, defaults={"lr": 0.5})
'''


@pytest.fixture(scope="module")
def paper_shape(tmp_path_factory):
    """The settings of the paper's MNIST shape: fashion-mnist (same shape) when its files are
    installed, else a synthetic task of that shape (a step's cost does not depend on the
    pixels)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        load_task_data("fashion-mnist", None)
        yield dict(task="fashion-mnist", **PAPER_SHAPE)
    except UsageError:
        folder = tmp_path_factory.mktemp("plugins")
        (folder / "tasks").mkdir()
        (folder / "tasks" / "mnist_shape.py").write_text(SYNTHETIC_TASK)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(registry.PLUGIN_PATH_VARIABLE, str(folder))
            registry.forget()
            yield dict(task="mnist-shape", **PAPER_SHAPE)
        registry.forget()
    torch.set_num_threads(threads)
