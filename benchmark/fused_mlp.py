"""Per-worker gradients of a ReLU multi-layer perceptron, by hand, in one batched pass.

For a model `nn.Sequential(<modules without parameters>..., Linear, ReLU, ..., Linear)`
trained with cross-entropy, the forward pass runs once over every worker's samples
([w·b, ...]); the loss gradient at the logits is (softmax − one-hot) / b; each Linear's
weight gradient per worker is one batched product (bmm over workers of δᵀ·input), its bias
gradient a sum, and δ goes back through the weights and the ReLU masks. Same FLOPs as
one fused forward+backward; measured against the alternatives in benchmark.gradients.
The leading parameter-free modules (input normalisation, random flips) run once over all
samples, outside autograd.
"""
from __future__ import annotations

import torch
from torch import nn

from .api import UsageError


class FusedMLP:
    def __init__(self, prefix: list[nn.Module], body: list[nn.Module]):
        self.prefix = prefix
        self.body = body

    @classmethod
    def of(cls, model: nn.Module, loss) -> "FusedMLP | None":
        """The fused computation for `model`, or None if it is not such an MLP."""
        if loss is not nn.functional.cross_entropy or not isinstance(model, nn.Sequential):
            return None
        modules = list(model)
        split = next((i for i, m in enumerate(modules) if isinstance(m, nn.Linear)), None)
        if split is None or any(list(m.parameters()) for m in modules[:split]):
            return None
        body = modules[split:]
        if not all(isinstance(m, (nn.Linear, nn.ReLU)) for m in body):
            return None
        if not isinstance(body[-1], nn.Linear) or any(
                isinstance(m, nn.ReLU) and m.inplace for m in body):
            return None
        return cls(modules[:split], body)

    def prefixed(self, inputs: torch.Tensor) -> torch.Tensor:
        """The leading parameter-free modules applied to `inputs` (no autograd)."""
        with torch.no_grad():
            for module in self.prefix:
                inputs = module(inputs)
        return inputs

    def forward(self, params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The Linear and ReLU layers on `prefixed` inputs [samples, features]: the
        operations nn.Linear and nn.ReLU run (addmm with the transposed weight), without
        autograd. params: the model's parameter tensors in order."""
        weights = iter(params)
        with torch.no_grad():
            for module in self.body:
                if isinstance(module, nn.Linear):
                    weight = next(weights)
                    bias = next(weights) if module.bias is not None else None
                    x = x @ weight.T if bias is None else torch.addmm(bias, x, weight.T)
                else:
                    x = torch.relu(x)
        return x

    def gradients(self, params: list[torch.Tensor], inputs: torch.Tensor,
                  targets: torch.Tensor):
        """params: the model's parameter tensors in order; inputs [w, b, ...],
        targets [w, b] -> (gradients [w, d] in parameter order, mean losses [w])."""
        workers, batch = targets.shape
        with torch.no_grad():
            x = inputs.reshape(workers * batch, *inputs.shape[2:])
            for module in self.prefix:
                x = module(x)
            layers, masks, weights = [], [], iter(params)
            if x.dim() != 2:
                raise UsageError(f"the first Linear layer gets inputs of shape {tuple(x.shape)}: "
                                 "fused gradients need [samples, features] (end the "
                                 "parameter-free modules with nn.Flatten, or use --set "
                                 "gradients=vmap)")
            for module in self.body:  # forward, keeping each Linear's input and ReLU mask
                if isinstance(module, nn.Linear):
                    weight = next(weights)
                    bias = next(weights) if module.bias is not None else None
                    layers.append((x, weight, bias))
                    x = x @ weight.T if bias is None else torch.addmm(bias, x, weight.T)
                else:
                    masks.append(x > 0)
                    x = x.relu()
            log_p = torch.log_softmax(x, dim=1)
            rows = torch.arange(workers * batch, device=x.device)
            picked = log_p[rows, targets.reshape(-1)]
            losses = -picked.view(workers, batch).mean(dim=1)
            delta = log_p.exp_()
            delta[rows, targets.reshape(-1)] -= 1
            delta /= batch
            dimension = sum(p.numel() for p in params)
            return self._backward(layers, masks, delta, workers, batch, dimension), losses

    def gradients_per_worker(self, params: list[torch.Tensor], inputs: torch.Tensor,
                             targets: torch.Tensor):
        """`gradients` where each worker has its own parameters: params [w, ...] each (the
        model's parameter tensors in order, a leading worker axis); every Linear layer is
        a batched product over workers instead of one product over all samples."""
        workers, batch = targets.shape
        with torch.no_grad():
            x = inputs.reshape(workers * batch, *inputs.shape[2:])
            for module in self.prefix:
                x = module(x)
            x = x.reshape(workers, batch, -1)
            layers, masks, weights = [], [], iter(params)
            for module in self.body:
                if isinstance(module, nn.Linear):
                    weight = next(weights)
                    bias = next(weights) if module.bias is not None else None
                    layers.append((x, weight, bias))
                    x = (torch.bmm(x, weight.transpose(1, 2)) if bias is None
                         else torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2)))
                else:
                    masks.append(x > 0)
                    x = x.relu()
            log_p = torch.log_softmax(x.reshape(workers * batch, -1), dim=1)
            rows = torch.arange(workers * batch, device=x.device)
            picked = log_p[rows, targets.reshape(-1)]
            losses = -picked.view(workers, batch).mean(dim=1)
            delta = log_p.exp_()
            delta[rows, targets.reshape(-1)] -= 1
            delta = (delta / batch).view(workers, batch, -1)
            out = delta.new_empty((workers, sum(p[0].numel() for p in params)))
            end = out.shape[1]
            for module in reversed(self.body):
                if isinstance(module, nn.ReLU):
                    delta = delta * masks.pop()
                    continue
                x, weight, bias = layers.pop()
                if bias is not None:
                    torch.sum(delta, dim=1, out=out[:, end - bias[0].numel():end])
                    end -= bias[0].numel()
                start = end - weight[0].numel()
                torch.bmm(delta.transpose(1, 2), x, out=out[:, start:end].unflatten(1, weight.shape[1:]))
                end = start
                if layers:
                    delta = torch.bmm(delta, weight)
            return out, losses

    def _backward(self, layers, masks, delta, workers, batch, dimension):
        """Fills [w, d] from the last parameter to the first, each product written straight
        into its columns (a strided output: no temporary)."""
        out = delta.new_empty((workers, dimension))
        end = dimension
        for module in reversed(self.body):
            if isinstance(module, nn.ReLU):
                delta = delta * masks.pop()
                continue
            x, weight, bias = layers.pop()
            per_worker = delta.view(workers, batch, -1)
            if bias is not None:
                torch.sum(per_worker, dim=1, out=out[:, end - bias.numel():end])
                end -= bias.numel()
            start = end - weight.numel()
            torch.bmm(per_worker.transpose(1, 2), x.view(workers, batch, -1),
                      out=out[:, start:end].unflatten(1, weight.shape))
            end = start
            if layers:
                delta = delta @ weight
        return out
