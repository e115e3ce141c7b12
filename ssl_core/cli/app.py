"""The typer application that ties the command modules together."""

from __future__ import annotations

import sys

import typer

from ssl_core.cli import eval_cmd, export_cmd, generate_cmd, info_cmd, list_cmd, report_cmd, run_cmd
from ssl_core.errors import SSLKitError

app = typer.Typer(
    name="ssl",
    help="sslkit: self-supervised learning for images, text, audio and image-text, in one loop.\n\n"
    "Start with `ssl list` to see the installed methods, then `ssl run --modality vision "
    "--objective simclr` to train on built-in data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("run")(run_cmd.run)
app.command("list")(list_cmd.list_components)
app.command("info")(info_cmd.info)
app.command("eval")(eval_cmd.evaluate)
app.command("report")(report_cmd.report)
app.command("compare")(report_cmd.compare)
app.command("generate")(generate_cmd.generate)
app.command("export")(export_cmd.export)


def main() -> None:
    """Console entry point: user errors print one clear message and exit with status 2."""
    from ssl_core.allocator import tune_malloc

    tune_malloc()  # before training allocates: see ssl_core.allocator (SSLKIT_MALLOC_TUNING=0 opts out)
    try:
        # without standalone mode click returns a command's typer.Exit code instead of exiting
        code = app(standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except SSLKitError as exc:
        typer.secho(f"Error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(130)
    except Exception as exc:  # an interrupted run, or click usage errors
        import click

        if _is_interruption(exc):
            typer.secho(str(exc), fg=typer.colors.YELLOW, err=True)
            sys.exit(130)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    except BaseException as exc:  # a second stop signal: TrainingAborted is not an Exception
        trainer = sys.modules.get("ssl_core.trainer")
        if trainer is not None and isinstance(exc, trainer.TrainingAborted):
            typer.secho(str(exc), fg=typer.colors.YELLOW, err=True)
            sys.exit(exc.exit_code)
        raise


def _is_interruption(exc: BaseException) -> bool:
    """A run stopped by a signal (checked without importing the trainer, which imports torch:
    only a command that trained can raise it, and that command imported the trainer)."""
    trainer = sys.modules.get("ssl_core.trainer")
    return trainer is not None and isinstance(exc, trainer.TrainingInterrupted)
