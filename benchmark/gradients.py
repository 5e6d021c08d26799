"""Per-worker gradients of a model whose parameters live in one flat vector θ.

Methods (RunConfig.gradients):
- `fused`: for a ReLU MLP trained with cross-entropy, one forward pass over all samples
  and a hand-written backward with per-worker batched products (benchmark.fused_mlp).
- `vmap`: torch.func.vmap of grad over the worker axis; any model without batch-norm
  running statistics.
- `loop`: an autograd pass per worker through the module itself; works for any
  model (batch-norm statistics are updated worker after worker).
- `auto` (default): fused where the model allows it, else vmap, else loop.

Measured (thread CPU time, one thread, medians of 15 calls, same process, issue 8): for
the 784-100-10 MLP of mnist / fashion-mnist with 27 workers × 83 samples (inputs already
floats), one plain forward+backward over the 2,241 samples took 10.0-10.2 ms, `fused`
11.8-13.1 ms, `vmap` 15.1-15.7 ms (an earlier sweep: `loop` 1.2-1.4x vmap). The CIFAR
CNN uses `loop`: vmap cannot update batch-norm running statistics.
"""
from __future__ import annotations

import functools

import torch
from torch.func import functional_call, grad_and_value, vmap

from .api import UsageError
from .fused_mlp import FusedMLP


class ModelFunctions:
    def __init__(self, model: torch.nn.Module, loss, method: str = "auto"):
        self.model = model
        self.loss = loss
        named = list(model.named_parameters())
        self.names = [name for name, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.dimension = sum(self.sizes)
        self.buffers = dict(model.named_buffers())
        self.fused = FusedMLP.of(model, loss)
        running_statistics = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                                 and m.track_running_stats for m in model.modules())
        if method == "auto":
            method = "fused" if self.fused else "loop" if running_statistics else "vmap"
        if method == "vmap" and running_statistics:
            raise UsageError("this model has batch-norm running statistics, which vmap cannot "
                             "update: use --set gradients=loop (the task's default)")
        if method == "fused" and self.fused is None:
            raise UsageError("gradients=fused needs an nn.Sequential of parameter-free "
                             "modules, then Linear and ReLU layers, trained with "
                             "cross-entropy: use --set gradients=vmap (or auto)")
        self.method = method
        self._prefix_cache: tuple | None = None  # (test inputs, chunk size, prefixed chunks)

    def initial_parameters(self) -> torch.Tensor:
        return torch.nn.utils.parameters_to_vector(self.model.parameters()).detach().clone()

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        pieces = torch.split(theta, self.sizes)
        return {name: piece.view(shape) for name, piece, shape in zip(self.names, pieces, self.shapes)}

    def unflatten_per_worker(self, thetas: torch.Tensor) -> dict[str, torch.Tensor]:
        """thetas [w, d] -> each parameter with a leading worker axis, [w, *shape]."""
        pieces = torch.split(thetas, self.sizes, dim=1)
        return {name: piece.reshape(len(thetas), *shape)
                for name, piece, shape in zip(self.names, pieces, self.shapes)}

    def _loss_of(self, params, inputs, targets):
        outputs = functional_call(self.model, (params, self.buffers), (inputs,))
        return self.loss(outputs, targets)

    def worker_gradients(self, theta: torch.Tensor, inputs: torch.Tensor,
                         targets: torch.Tensor, l2: float = 0.0
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs [w, b, ...], targets [w, b] -> (gradients [w, d] of the loss plus
        l2/2·‖θ‖², mean losses [w] of the loss alone)."""
        self.model.train()
        method = {"fused": self._fused, "loop": self._loop, "vmap": self._vmap}[self.method]
        gradients, losses = method(theta, inputs, targets)
        if l2:
            gradients.add_(theta, alpha=l2)
        return gradients, losses

    def gradients_at(self, thetas: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor,
                     l2: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """`worker_gradients` where worker i is at its own parameters thetas[i] ([w, d])."""
        self.model.train()
        if self.method == "fused":
            params = list(self.unflatten_per_worker(thetas).values())
            gradients, losses = self.fused.gradients_per_worker(params, inputs, targets)
        else:
            gradients, losses = self.unfused_gradients_at(thetas, inputs, targets)
        if l2:
            gradients.add_(thetas, alpha=l2)
        return gradients, losses

    def unfused_gradients_at(self, thetas: torch.Tensor, inputs: torch.Tensor,
                             targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each worker's gradient at its own parameters, without l2, by the loop or by vmap
        (also for the fused method: local steps run so): thetas [w, d], inputs [w, b, ...],
        targets [w, b] -> (gradients [w, d], mean losses [w])."""
        self.model.train()
        if self.method == "loop":
            pairs = [self.worker_gradients(theta, x[None], y[None])
                     for theta, x, y in zip(thetas, inputs, targets)]
            return torch.cat([g for g, _ in pairs]), torch.cat([loss for _, loss in pairs])
        grads, losses = vmap(grad_and_value(self._loss_of), in_dims=(0, 0, 0),
                             randomness="different")(self.unflatten_per_worker(thetas),
                                                     inputs, targets)
        flat = torch.cat([grads[name].reshape(len(thetas), -1) for name in self.names], dim=1)
        return flat, losses.detach()

    def _fused(self, theta, inputs, targets):
        return self.fused.gradients(list(self.unflatten(theta).values()), inputs, targets)

    def _vmap(self, theta, inputs, targets):
        params = self.unflatten(theta)
        grads, losses = vmap(grad_and_value(self._loss_of), in_dims=(None, 0, 0),
                             randomness="different")(params, inputs, targets)
        flat = torch.cat([grads[name].reshape(inputs.shape[0], -1) for name in self.names], dim=1)
        return flat, losses.detach()

    def _loop(self, theta, inputs, targets):
        torch.nn.utils.vector_to_parameters(theta, self.model.parameters())
        parameters = list(self.model.parameters())
        rows, losses = [], []
        for worker_inputs, worker_targets in zip(inputs, targets):
            loss = self.loss(self.model(worker_inputs), worker_targets)
            grads = torch.autograd.grad(loss, parameters)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
            losses.append(loss.detach())
        return torch.stack(rows), torch.stack(losses)

    @torch.no_grad()
    def evaluate(self, theta: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor,
                 chunk: int = 2048) -> tuple[float, float]:
        """(accuracy, mean loss) on a test set, in eval mode. A fused MLP runs its Linear
        and ReLU layers by hand on its parameter-free modules' output, computed once per
        test set (the same operations, chunk by chunk, as the module: the same bits)."""
        self.model.eval()
        params = self.unflatten(theta)
        if self.fused is not None:
            chunks = self._prefixed_chunks(inputs, chunk)
            forward = functools.partial(self.fused.forward, list(params.values()))
        else:
            chunks = (inputs[start:start + chunk] for start in range(0, len(inputs), chunk))
            forward = functools.partial(functional_call, self.model, (params, self.buffers))
        correct, total_loss = 0, 0.0
        for start, x in zip(range(0, len(inputs), chunk), chunks):
            y = targets[start:start + chunk]
            outputs = forward((x,)) if self.fused is None else forward(x)
            total_loss += float(self.loss(outputs, y)) * len(y)
            correct += int((outputs.argmax(dim=1) == y).sum())
        self.model.train()
        return correct / len(inputs), total_loss / len(inputs)

    def _prefixed_chunks(self, inputs: torch.Tensor, chunk: int) -> list[torch.Tensor]:
        """The fused MLP's parameter-free modules applied, in eval mode, to each chunk of
        `inputs`; kept for the next evaluation of the same test set (a run evaluates one
        set tens of times: converting and normalising it each time cost about a fifth of
        an evaluation on Fashion-MNIST)."""
        cached = self._prefix_cache
        if cached is None or cached[0] is not inputs or cached[1] != chunk:
            chunks = [self.fused.prefixed(inputs[start:start + chunk])
                      for start in range(0, len(inputs), chunk)]
            self._prefix_cache = cached = (inputs, chunk, chunks)
        return cached[2]
