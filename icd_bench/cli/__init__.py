"""The ``icd-bench`` command line (typer): the root app with --debug and --version, the command groups
registered on it, and ``main``, the entry point."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from icd_bench import __version__
from icd_bench.cli import bench, interchange, report, run, sweep, toy, train
from icd_bench.cli.common import console, out
from icd_bench.errors import IcdBenchError

app = typer.Typer(
    name="icd-bench",
    help="Benchmark and evaluation harness for fast text-guided image editing, built around "
         "invertible Consistency Distillation (iCD).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        out.print(f"icd-bench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False,
    version: Annotated[bool | None, typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    ctx.ensure_object(dict)["debug"] = debug  # the commands read it from their context (ctx.obj)


app.command("list")(run.list_cmd)
app.command("run")(run.run)
app.command("score")(run.score)
app.command("import")(interchange.import_cmd)
app.command("export")(interchange.export_cmd)
app.command("sweep")(sweep.sweep)
app.add_typer(train.train_app, name="train")
app.add_typer(toy.toy_app, name="toy")
app.command("stats")(report.stats)
app.command("report")(report.report)
app.command("reproduce")(report.reproduce)
app.command("figure")(report.figure)
app.command("gallery")(report.gallery)
app.command("bench")(bench.bench)
app.command("regress")(bench.regress)


def main() -> None:
    """Entry point: user errors become one line on stderr (exit 2); ``--debug`` shows tracebacks."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    debug = "--debug" in sys.argv[1:]
    try:
        rc = app(standalone_mode=False)  # a typer.Exit(code) comes back as its code here
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except IcdBenchError as exc:
        if debug:
            raise
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        console.print("interrupted: re-run the same command to resume")
        sys.exit(130)
    except Exception as exc:  # usage errors come here in non-standalone mode: click's, or those of the
        # click copy recent typer releases carry (no shared base class to test, so by their interface)
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise
