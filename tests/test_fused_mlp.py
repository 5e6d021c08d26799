"""The fused per-worker gradients of ReLU MLPs: the same numbers as vmap of autograd."""
import pytest
import torch
from torch import nn

from benchmark.api import UsageError
from benchmark.gradients import ModelFunctions
from tasks._vision import MNIST_STATS, ImageInput


def models():
    torch.manual_seed(0)
    return {
        "digits-like": (nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)),
                        torch.randn(5, 7, 64)),
        "images, no bias, three layers": (
            nn.Sequential(ImageInput(MNIST_STATS, flip=False), nn.Flatten(),
                          nn.Linear(36, 20, bias=False), nn.ReLU(), nn.Linear(20, 12),
                          nn.ReLU(), nn.Linear(12, 10)),
            torch.randint(0, 256, (4, 9, 6, 6), dtype=torch.uint8)),
    }


@pytest.mark.parametrize("name", list(models()))
def test_fused_gradients_and_losses_match_vmap(name):
    model, inputs = models()[name]
    targets = torch.randint(0, 10, inputs.shape[:2], generator=torch.Generator().manual_seed(1))
    fused = ModelFunctions(model, nn.functional.cross_entropy, "fused")
    reference = ModelFunctions(model, nn.functional.cross_entropy, "vmap")
    theta = fused.initial_parameters()
    gradients, losses = fused.worker_gradients(theta, inputs, targets, l2=0.01)
    expected, expected_losses = reference.worker_gradients(theta, inputs, targets)
    expected += 0.01 * theta  # the gradient of (l2 / 2)·‖θ‖²
    assert gradients.shape == (inputs.shape[0], fused.dimension)
    torch.testing.assert_close(gradients, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(losses, expected_losses, rtol=1e-6, atol=1e-7)


def test_auto_picks_fused_for_mlps_and_vmap_otherwise():
    mlp = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert ModelFunctions(mlp, nn.functional.cross_entropy).method == "fused"
    assert ModelFunctions(mlp, nn.functional.mse_loss).method == "vmap"
    tanh = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    assert ModelFunctions(tanh, nn.functional.cross_entropy).method == "vmap"
    with pytest.raises(UsageError, match="gradients=vmap"):
        ModelFunctions(tanh, nn.functional.cross_entropy, "fused")
    with_norm = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    assert ModelFunctions(with_norm, nn.functional.cross_entropy).method == "loop"


def test_unflattened_inputs_are_refused_with_the_fix():
    model = nn.Sequential(nn.Linear(6, 3), nn.ReLU(), nn.Linear(3, 2))
    functions = ModelFunctions(model, nn.functional.cross_entropy, "fused")
    with pytest.raises(UsageError, match="nn.Flatten"):
        functions.worker_gradients(functions.initial_parameters(), torch.randn(2, 3, 4, 6),
                                   torch.zeros(2, 3, dtype=torch.long))


def _module_evaluation(functions, theta, inputs, targets, chunk):
    """What evaluate computed before the fused path: the module itself, chunk by chunk."""
    from torch.func import functional_call
    functions.model.eval()
    params = functions.unflatten(theta)
    correct, total = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(inputs), chunk):
            x, y = inputs[start:start + chunk], targets[start:start + chunk]
            outputs = functional_call(functions.model, (params, functions.buffers), (x,))
            total += float(functions.loss(outputs, y)) * len(y)
            correct += int((outputs.argmax(dim=1) == y).sum())
    functions.model.train()
    return correct / len(inputs), total / len(inputs)


@pytest.mark.parametrize("name", list(models()))
def test_fused_evaluation_gives_the_modules_bits_and_serves_only_its_own_test_set(name):
    model, inputs = models()[name]
    generator = torch.Generator().manual_seed(2)
    inputs = inputs.reshape(-1, *inputs.shape[2:])
    targets = torch.randint(0, 10, (len(inputs),), generator=generator)
    functions = ModelFunctions(model, nn.functional.cross_entropy)
    theta = functions.initial_parameters()
    theta += 0.3 * torch.randn(theta.shape, generator=generator)
    assert functions.fused is not None
    for _ in range(2):  # the second evaluation reads the cached parameter-free modules' output
        assert functions.evaluate(theta, inputs, targets, chunk=8) == \
            _module_evaluation(functions, theta, inputs, targets, chunk=8)
    other = inputs.flip(0).contiguous()
    assert functions.evaluate(theta, other, targets, chunk=8) == \
        _module_evaluation(functions, theta, other, targets, chunk=8)
    assert model.training  # evaluation leaves the model in training mode
