"""The server's trusted root data set (FLTrust's threat model, Cao et al., NDSS 2021) and
the server's own update on it, which a defense that declares `server_gradient` receives.

Only runs of such a defense hold a root set. It is `root_size` examples of the task's
training set (RunConfig.root_size, default 100 as in the paper), drawn once per run,
uniformly without replacement, from the run's "root" stream. The paper's root set is
collected apart from the clients' data; here it is carved out of the same training set
and the workers' sampler leaves those examples out (benchmark.sampling.make_sampler,
`excluded`), so the server's data and the workers' never overlap. Runs of every other
defense draw nothing from this stream and sample as before.

The server computes its update as one more honest worker would, through the same
`HonestWorkers` code: each step a batch of batch_size examples from its root set (seeded
epoch permutations of the root set, from the same "root" stream), the task's loss plus
l2, local steps, clipping, then the submission's momentum:
  worker  the server keeps its own momentum of root gradients, m0 ← μ·m0 + (1−δ)·g0;
  server  (1−δ)·g0 + μ·(previous aggregate), as every honest worker adds it;
  update  the clipped gradient itself.
So the server's vector and the workers' are alike (the rule compares directions and
rescales to the server's norm). Its sampler and momentum are checkpointed with the run.
"""
from __future__ import annotations

import torch

from ..api import TaskData, UsageError
from ..config import RunConfig
from ..gradients import ModelFunctions
from ..sampling import IidSampler, Subset
from .workers import HonestWorkers, NoPoisoner


def draw_root(examples: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """The root set: `size` of the `examples` training indices, sorted."""
    if size >= examples:
        raise UsageError(f"root_size={size} would leave the workers no training data: the "
                         f"task has {examples} training examples; lower root_size")
    return torch.randperm(examples, generator=generator)[:size].sort().values


class RootData:
    """The server's root set and its update on it (`gradient`)."""

    def __init__(self, config: RunConfig, data: TaskData, functions: ModelFunctions,
                 generator: torch.Generator, device: torch.device):
        self.indices = draw_root(len(data.train_targets), config.root_size, generator)
        sampler = Subset(IidSampler(config.root_size, config.batch_size, generator),
                         self.indices)
        self.worker = HonestWorkers(config, data, functions, sampler, 1, device)

    def gradient(self, theta: torch.Tensor, lr: float,
                 previous_aggregate: torch.Tensor) -> torch.Tensor:
        """The server's update at θ: Tensor[d], a copy the defense may keep."""
        sampled, _ = self.worker.gradients(theta, lr, NoPoisoner())
        return self.worker.submissions(sampled, previous_aggregate)[0].clone()

    def state_dict(self) -> dict:
        return self.worker.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.worker.load_state_dict(state)
