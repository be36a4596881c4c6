"""Overrides Hydra cannot parse (issue 19.7): train.py and composite.py stop before Hydra with
the override, Hydra's reason and the quoted form to type instead."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from cloudseg.command_line import quoted_override, unparsable_override

REPO = Path(__file__).resolve().parents[1]


def test_non_ascii_path_is_told_to_be_quoted():
    message = unparsable_override(["stack.source=/data/stäcks/29RKH", "progress=false"])
    assert message.startswith(
        "Cannot parse the command-line override 'stack.source=/data/stäcks/29RKH' "
        "(LexerNoViableAltException: stack.source=/data/stäcks/29RKH). Values with spaces, "
        "non-ASCII letters or any of ()[]{}:,=' must be quoted. Quote the value for Hydra, inside "
        """the shell's quotes: 'stack.source="/data/stäcks/29RKH"'"""
    )


def test_a_path_split_at_a_space_by_the_shell_is_told_to_be_quoted_whole():
    message = unparsable_override(["debug=fdr", "data.root=/data/my", "labels", "seed=1"])
    assert message == (
        "Cannot parse the command-line override 'labels': it is not key=value. If it is the rest "
        "of data.root's value (a path with a space, split by the shell), quote the whole "
        """override: 'data.root="/data/my labels"'"""
    )


def test_parsable_overrides_and_hydra_flags_pass():
    argv = ["-m", "--config-name", "train", "model.lr=1e-3,3e-3", "+x=[a,b]", "~y", "p=a b"]
    assert unparsable_override(argv) is None


@pytest.mark.parametrize("value", ["/data/stäcks/a b", "it's (1)", 'say "hi"'])
def test_the_suggested_override_parses_back_to_the_value(value):
    (shell_word,) = shlex.split(quoted_override("stack.source", value))
    (override,) = OverridesParser.create().parse_overrides([shell_word])
    assert override.value() == value


@pytest.mark.parametrize("script", ["train.py", "composite.py"])
def test_entry_points_stop_with_the_hint(script, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / script), "data.root=/tmp/dätä"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 1
    assert """Quote the value for Hydra, inside the shell's quotes: 'data.root="/tmp/dätä"'""" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
