"""The ``zoo`` command. Subcommands load lazily, so ``zoo --help`` imports neither torch nor plugins."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from zoo import __version__
from zoo.errors import ZooError

# command name -> "module:attribute"; a module is imported only when its command runs or is listed.
COMMANDS = {
    "build": "zoo.cli.build:build",
    "compare": "zoo.cli.compare:compare",
    "demo": "zoo.cli.demo:demo",
    "embed": "zoo.cli.embed:embed",
    "evaluate": "zoo.cli.evaluate:evaluate",
    "finetune": "zoo.cli.finetune:finetune",
    "info": "zoo.cli.info:info",
    "merge": "zoo.cli.merge:merge",
    "predict": "zoo.cli.predict:predict",
    "pretrain": "zoo.cli.pretrain:pretrain",
    "export": "zoo.cli.export:export",
    "parts": "zoo.cli.listing:parts",
    "plugins": "zoo.cli.listing:plugins",
    "plugin": "zoo.cli.scaffold:plugin",
    "rerank": "zoo.cli.rerank:rerank",
    "serve": "zoo.cli.serve:serve",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS:
            module_name, _, attr = COMMANDS[name].partition(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, name)

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            from zoo.errors import did_you_mean

            if args and args[0] not in self.list_commands(ctx):
                raise click.UsageError(
                    f"no such command '{args[0]}'{did_you_mean(args[0], self.list_commands(ctx))}"
                ) from exc
            raise

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """As click's, except that a usage error (a misspelt option, a bad value) is one line, as zoo's own
        errors are: ``error: no such option '--epoch'. Did you mean '--epochs'? (zoo finetune --help)``."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            returned = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # `zoo` alone: the help
                exc.show()
                sys.exit(exc.exit_code)
            message = exc.format_message()
            where = f" ({exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            click.echo(f"error: {message[:1].lower()}{message[1:]}{where}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:  # Ctrl-C at a prompt
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(returned if isinstance(returned, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ZooError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:  # `zoo predict ... | head` stopped reading: stop quietly, as other tools do
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so that flushing stdout at exit cannot fail again
            sys.exit(141)  # 128 + SIGPIPE, what a shell reports for a command a pipe closed on


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zoo")
@click.option("--debug", is_flag=True, envvar="ZOO_DEBUG", help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Assemble transformer encoders from named parts, fine-tune them, and ship them through ONNX."""
    ctx.ensure_object(dict)["debug"] = debug


def main() -> None:
    from zoo.threads import passive_wait

    passive_wait()  # before any command loads torch
    cli(prog_name="zoo")
