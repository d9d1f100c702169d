"""Developer tasks: ``nox -s tests lint demo regress bench``.

Each session installs the project into its own virtualenv the way the README does.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (benchmarks excluded)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs, env=OFFLINE)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the package, the tests and this file."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "icd_bench", "tests", "noxfile.py")


@nox.session
def demo(session: nox.Session) -> None:
    """The README's main command: DDIM inversion of the demo set with the bundled toy teacher."""
    session.install("-e", ".")
    session.run("icd-bench", "run", "--method", "ddim-toy-inversion", "--dataset", "demo",
                "--task", "invert", "--out", "runs/demo", *session.posargs, env=OFFLINE)


@nox.session
def toy_quality(session: nox.Session) -> None:
    """The toy teacher's quality bar: oracle accuracy on held-out combinations, inversion PSNR."""
    session.install("-e", ".")
    session.run("icd-bench", "toy", "evaluate", "--out", "reports/toy", *session.posargs, env=OFFLINE)


@nox.session
def regress(session: nox.Session) -> None:
    """Regression of the bundled models' inversion metrics: not yet available."""
    session.error("not yet available: `icd-bench regress` arrives with the metrics and reports")


@nox.session
def bench(session: nox.Session) -> None:
    """Performance benchmarks: not yet available."""
    session.error("not yet available: `icd-bench bench` arrives with the performance work")
