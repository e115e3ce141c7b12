"""The typer application that ties the command modules together."""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Callable

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


def reflowed_help(command: Callable[..., object]) -> str:
    """A command's docstring as help text: paragraphs kept, the line breaks inside each joined.

    Typer's rich help keeps a docstring's line breaks, so text wrapped at 100 columns in the
    source came out ragged in an 80-column terminal; joined, the terminal wraps it once.
    """
    paragraphs = inspect.cleandoc(command.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


for _name, _command in [("run", run_cmd.run), ("list", list_cmd.list_components), ("info", info_cmd.info),
                        ("eval", eval_cmd.evaluate), ("report", report_cmd.report), ("compare", report_cmd.compare),
                        ("generate", generate_cmd.generate), ("export", export_cmd.export)]:
    app.command(_name, help=reflowed_help(_command))(_command)


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
        if _is_interruption(exc):
            typer.secho(str(exc), fg=typer.colors.YELLOW, err=True)
            sys.exit(130)
        if isinstance(exc, _usage_error_types()):
            exc.show()  # "Usage: ..." and "Error: No such option: --x", as typer prints them
            sys.exit(exc.exit_code)
        raise
    except BaseException as exc:  # a second stop signal: TrainingAborted is not an Exception
        trainer = sys.modules.get("ssl_core.trainer")
        if trainer is not None and isinstance(exc, trainer.TrainingAborted):
            typer.secho(str(exc), fg=typer.colors.YELLOW, err=True)
            sys.exit(exc.exit_code)
        raise


def _usage_error_types() -> tuple[type[Exception], ...]:
    """The exception classes of command-line usage errors (unknown option, extra argument, bad
    value). Recent typer releases carry their own copy of click (``typer._click``) and do not
    install click; older ones raise click's own classes. Both are checked, whichever is present."""
    found: list[type[Exception]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).ClickException)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _is_interruption(exc: BaseException) -> bool:
    """A run stopped by a signal (checked without importing the trainer, which imports torch:
    only a command that trained can raise it, and that command imported the trainer)."""
    trainer = sys.modules.get("ssl_core.trainer")
    return trainer is not None and isinstance(exc, trainer.TrainingInterrupted)
