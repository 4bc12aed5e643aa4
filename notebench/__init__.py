"""Notebench: what users import in their notebooks (``import notebench``).

The platform's own code lives in the sub-packages (``notebench.hub``, ``notebench.executor``: the
repository's hub/ and executor/ folders); names here are loaded on first use, so importing a
sub-package costs nothing more.

- ``notebench.log_training_profile(df, predictions=None)``: log a profile of the training data with the
  active MLflow run, the baseline that endpoint monitoring compares requests with (README, "Model endpoints").
"""

from __future__ import annotations

__all__ = ["log_training_profile"]


def __getattr__(name: str):
    if name == "log_training_profile":
        from notebench.executor.runtime.profile import log_training_profile

        return log_training_profile
    raise AttributeError(f"module 'notebench' has no attribute {name!r}")
