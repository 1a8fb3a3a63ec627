"""uwm_model: learning rules for populations of Bernoulli-logistic networks (torch only).

    import torch, uwm_model as um
    task = um.Multiplexer(address_bits=2)
    net = um.init_network([task.input_size, 8, 8, 1], population=4, seed=0, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    g = um.estimate("uwm", net, task, task.sample_inputs(32, gen), generator=gen)
    J, grad = um.exact_gradient(net, task)

The names below load on first use, so ``uwm_model.metrics`` (the metric registry, plain Python)
can be read without importing torch (the analysis package does).
"""

from importlib import import_module

_EXPORTS = {
    "network": ("Episode", "Network", "init_network", "resolve_device", "resolve_dtype", "sample_episode"),
    "optim": ("SGD", "Adam", "adam_update", "sgd_update"),
    "oracle": ("exact_gradient", "expected_reward"),
    "rules": ("RULES", "Estimate", "Gradient", "estimate", "resolve_rule"),
    "tasks": ("Multiplexer", "make_task"),
    "datasets": ("DatasetTask", "DATASETS"),
    "units": ("BERNOULLI", "CATEGORICAL", "Bernoulli", "Categorical"),
    "config": ("CrossRule", "ProbeConfig", "TaskConfig", "TrialConfig"),
    "trainer": ("PointReport", "Report", "Trainer"),
    "settings": ("torch_settings",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'uwm_model' has no attribute '{name}'")
    value = getattr(import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
