"""Developer tasks: ``nox -s tests lint demo regress bench soak``.

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
    """ruff over the repository (the package, the tests, the tools, this file)."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built strictly (a broken link or a missing API page fails it) into site/."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict")


@nox.session
def demo(session: nox.Session) -> None:
    """The README's main command: DDIM inversion of the demo set with the bundled toy teacher."""
    session.install("-e", ".")
    session.run("icd-bench", "run", "--method", "ddim-toy-inversion", "--dataset", "demo",
                "--task", "invert", "--out", "runs/demo", "--batch-size", "16",
                "--score", "--report", *session.posargs, env=OFFLINE)


@nox.session
def toy_quality(session: nox.Session) -> None:
    """The toy teacher's quality bar: oracle accuracy on held-out combinations, inversion PSNR."""
    session.install("-e", ".")
    session.run("icd-bench", "toy", "evaluate", "--out", "reports/toy", *session.posargs, env=OFFLINE)


@nox.session
def toy_teacher(session: nox.Session) -> None:
    """Train the toy teacher from scratch (8,000 steps; hours on a 2-core CPU, minutes on a GPU)."""
    session.install("-e", ".")
    session.run("icd-bench", "train", "toy-teacher", "--recipe", "training/toy-teacher.toml",
                "--out", "runs/train/toy-teacher", *session.posargs, env=OFFLINE)


@nox.session
def toy_icd(session: nox.Session) -> None:
    """Train the toy iCD models from the bundled teacher (stage 1, stage 2 and its three continuations) and
    bundle them."""
    session.install("-e", ".")
    session.run("icd-bench", "train", "cfg-distill", "--recipe", "training/toy-cfg-distill.toml",
                "--out", "runs/train/toy-cfg-distill", *session.posargs, env=OFFLINE)
    session.run("icd-bench", "train", "icd", "--recipe", "training/toy-icd.toml",
                "--out", "runs/train/toy-icd", *session.posargs, env=OFFLINE)
    session.run("icd-bench", "train", "icd", "--recipe", "training/toy-icd-continue.toml", "--out",
                "runs/train/toy-icd-continue", *session.posargs, env=OFFLINE)
    session.run("icd-bench", "train", "icd", "--recipe", "training/toy-icd-continue2.toml", "--out",
                "runs/train/toy-icd-continue2", *session.posargs, env=OFFLINE)
    session.run("icd-bench", "train", "icd", "--recipe", "training/toy-icd-continue3.toml", "--out",
                "runs/train/toy-icd-continue3", *session.posargs, env=OFFLINE)
    session.run("icd-bench", "toy", "bundle-icd", env=OFFLINE)


@nox.session
def toy_lcm(session: nox.Session) -> None:
    """Train the toy LCM (ReNoise's and InfEdit's few-step model) on the bundled student and bundle it."""
    session.install("-e", ".")
    session.run("icd-bench", "train", "icd", "--recipe", "training/toy-lcm.toml",
                "--out", "runs/train/toy-lcm", *session.posargs, env=OFFLINE)
    session.run("icd-bench", "toy", "bundle-lcm", env=OFFLINE)


@nox.session
def toy_reports(session: nox.Session) -> None:
    """The toy iCD reports: Table 2 (reports/toy/table2.md) and the edit comparison (reports/toy/edits.md)."""
    session.install("-e", ".")
    session.run("icd-bench", "toy", "table2", *session.posargs, env=OFFLINE)
    session.run("icd-bench", "toy", "compare-edits", env=OFFLINE)


@nox.session
def regress(session: nox.Session) -> None:
    """Regression of the bundled toy models' inversion metrics against reports/regression/toy-inversion.json
    (`nox -s regress -- --update` rewrites the baseline)."""
    session.install("-e", ".")
    session.run("icd-bench", "regress", *session.posargs, env=OFFLINE)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite (tests/bench, pytest-benchmark), then the editing time of the eight toy methods on
    this machine into reports/perf/ (posargs go to `icd-bench bench`, e.g. `-- --backbone sd15-random
    --device cuda --dtype fp16`)."""
    session.install("-e", ".[dev]")
    session.run("pytest", "tests/bench", "-m", "bench", "-q", env=OFFLINE)
    session.run("icd-bench", "bench",
                *(session.posargs or ["--methods", "all", "--repeats", "3"]), env=OFFLINE)


@nox.session
def soak(session: nox.Session) -> None:
    """Run the demo job and SIGKILL it at random moments 20 times, checking the run store after each kill,
    then finish it and compare with an uninterrupted run (manual use; minutes on a CPU)."""
    session.install("-e", ".")
    session.run("python", "tests/soak.py", *(session.posargs or ["--rounds", "20"]), env=OFFLINE)
