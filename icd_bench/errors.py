"""Errors that reach a user.

`IcdBenchError` and its subclasses carry a message meant for a person: what is wrong and how to
fix it. The CLI prints such an error as one line (no traceback unless ``--debug``); anything else
is a bug and is shown with its traceback.
"""

from __future__ import annotations


class IcdBenchError(Exception):
    """A problem the user can fix; the message says what and how."""


class UnknownNameError(IcdBenchError, KeyError):
    """A method, dataset, metric, backbone or preset name that is not registered."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class ConfigError(IcdBenchError):
    """A preset, a ``--set`` override or a run configuration that cannot be used."""


class BackboneNotFoundError(IcdBenchError):
    """A model that is neither a local directory nor reachable (offline, or no such repository)."""


class RunStoreError(IcdBenchError):
    """A run directory that cannot be used for this run (other configuration, unwritable, ...)."""


class SampleError(IcdBenchError):
    """One sample cannot be processed (missing file, unreadable image, empty prompt, ...).

    The runner records it as a per-sample error and goes on with the next sample.
    """

    def __init__(self, sample_id: str, reason: str):
        super().__init__(f"{sample_id}: {reason}")
        self.sample_id = sample_id
        self.reason = reason


class SampleWarning(UserWarning):
    """A usable sample with a caveat (a prompt truncated to the text encoder's window, local blend
    turned off). The runner also keeps the caveat in the sample's record; filter this category to
    silence the messages."""


def first_line(exc: BaseException) -> str:
    """The first line of a library's exception message (or its type): the part worth one error line."""
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(". ") if text else type(exc).__name__
