"""One base error for the PyTorch backend, with typed subclasses carrying a stable ``code``.

Every validation failure at a module boundary raises one of these (never a bare ValueError from deep
inside torch), so the HTTP layer maps ``code`` to a JSON error without parsing text. The policy codes
are the ones of ``@piflow/policy`` (policy/src/errors.ts).
"""

from __future__ import annotations


class PiflowTorchError(Exception):
    """Base class of every error raised by ``piflow_torch``."""

    code = "piflow_torch_error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class PolicyError(PiflowTorchError):
    """The policy math was given something it cannot use (policy/src/errors.ts codes)."""

    code = "invalid_option"


class PolicyShapeError(PolicyError):
    """A tensor's shape does not match the shape it is used with."""

    code = "invalid_shape"


class PolicySigmaError(PolicyError):
    """A σ or raw time is not finite or outside [0, 1], or σ_dst > σ_src."""

    code = "invalid_sigma"


class PolicyOptionError(PolicyError):
    """Any other option out of range (K, N, eps, temperature, shift, counts, seeds …)."""

    code = "invalid_option"


class PolicyValueError(PolicyError):
    """A tensor holds a value the math cannot use (NaN, +∞, a pixel whose log-weights are all −∞)."""

    code = "invalid_value"


class AdapterError(PiflowTorchError):
    """A base or π-Flow adapter cannot be loaded: missing files, unreadable config, mismatched keys."""

    code = "adapter_invalid"


class UnsupportedAdapterError(AdapterError):
    """The adapter's model class or policy type is one this backend does not serve."""

    code = "adapter_unsupported"


class ModelNotFoundError(AdapterError):
    """A repo id / subfolder does not resolve (offline cache miss, no such repo, no access)."""

    code = "model_not_found"


class ConditioningError(PiflowTorchError):
    """The conditioning given to a student forward lacks a tensor or has the wrong shape."""

    code = "invalid_conditioning"


class Cancelled(PiflowTorchError):
    """A generation was stopped between NFEs because its ``should_stop()`` returned true."""

    code = "cancelled"

    def __init__(self, message: str = "generation cancelled", *, completed_steps: int = 0):
        super().__init__(message)
        self.completed_steps = completed_steps
