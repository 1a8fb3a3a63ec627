"""uwm_model: learning rules for populations of Bernoulli-logistic networks (torch only).

    import torch, uwm_model as um
    task = um.Multiplexer(address_bits=2)
    net = um.init_network([task.input_size, 8, 8, 1], population=4, seed=0, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    g = um.estimate("uwm", net, task, task.sample_inputs(32, gen), generator=gen)
    J, grad = um.exact_gradient(net, task)
"""

from .network import Episode, Network, init_network, resolve_device, resolve_dtype, sample_episode
from .optim import SGD, Adam, adam_update, sgd_update
from .oracle import exact_gradient, expected_reward
from .rules import RULES, Estimate, Gradient, estimate, resolve_rule
from .tasks import Multiplexer

__all__ = [
    "Adam", "Episode", "Estimate", "Gradient", "Multiplexer", "Network", "RULES", "SGD", "adam_update",
    "estimate", "exact_gradient", "expected_reward", "init_network", "resolve_device", "resolve_dtype",
    "resolve_rule", "sample_episode", "sgd_update",
]
__version__ = "0.1.0"

from .config import CrossRule, ProbeConfig, TaskConfig, TrialConfig  # noqa: E402
from .trainer import PointReport, Report, Trainer  # noqa: E402

__all__ += ["CrossRule", "PointReport", "ProbeConfig", "Report", "TaskConfig", "TrialConfig", "Trainer"]
