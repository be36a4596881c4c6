"""Check ``train.py`` / ``composite.py`` command-line overrides before Hydra sees them.

Hydra's own parse error for a value it cannot read unquoted (a path with non-ASCII letters or
``()[]{}:,=``-type characters, or a path with a space the shell split into two arguments) is a
lexer message that never says to quote the value. :func:`exit_on_unparsable_override` parses
every override with Hydra's parser first and, on failure, stops with the override, Hydra's reason
and the quoted form to type instead.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence

from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException

GRAMMAR_URL = "https://hydra.cc/docs/advanced/override_grammar/basic/"


def unparsable_override(argv: Sequence[str]) -> str | None:
    """The message for the first override in ``argv`` (a command line without the program)
    that Hydra cannot parse, with the quoted form to use; ``None`` when all parse."""
    overrides = get_args_parser().parse_known_args(list(argv))[0].overrides or []
    parser = OverridesParser.create()
    for index, text in enumerate(overrides):
        try:
            parser.parse_overrides([text])
        except OverrideParseException as err:
            reason = " ".join(line.strip() for line in str(err).splitlines()[:1])
            previous = overrides[index - 1] if index else None
            if "=" not in text and previous is not None and "=" in previous:
                key, _, value = previous.partition("=")
                return (
                    f"Cannot parse the command-line override {text!r}: it is not key=value. If "
                    f"it is the rest of {key}'s value (a path with a space, split by the shell), "
                    f"quote the whole override: {quoted_override(key, f'{value} {text}')}"
                )
            key, separator, value = text.partition("=")
            hint = (
                f" Quote the value for Hydra, inside the shell's quotes: "
                f"{quoted_override(key, value)}"
                if separator
                else " Overrides are key=value."
            )
            return (
                f"Cannot parse the command-line override {text!r} ({reason}). Values with spaces, "
                f"non-ASCII letters or any of ()[]{{}}:,=' must be quoted.{hint} (Hydra's override "
                f"grammar: {GRAMMAR_URL})"
            )
    return None


def quoted_override(key: str, value: str) -> str:
    """``key="value"`` quoted for Hydra and then for a POSIX shell."""
    inner = f'"{value}"' if '"' not in value else "'" + value.replace("'", "\\'") + "'"
    return shlex.quote(f"{key}={inner}")


def exit_on_unparsable_override(argv: Sequence[str] | None = None) -> None:
    """Exit with :func:`unparsable_override`'s message (status 1, like Hydra) if there is one."""
    message = unparsable_override(sys.argv[1:] if argv is None else argv)
    if message:
        raise SystemExit(message)
