"""User-facing errors: one line, no traceback, a non-zero exit."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ZooError(Exception):
    """A mistake the user can fix. The CLI prints it as one line and exits with ``exit_code``."""

    exit_code = 2


class ExportMismatch(ZooError):
    """An export whose outputs differ from the eager model beyond tolerance."""

    exit_code = 1


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'; did you mean 'x'?' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def unknown(kind: str, word: str, choices: Iterable[str]) -> ZooError:
    choices = sorted(choices)
    return ZooError(
        f"unknown {kind} '{word}'{did_you_mean(word, choices) or ';'} choices: {', '.join(choices) or '(none)'}"
    )
