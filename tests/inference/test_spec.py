"""The inference spec and the mask rule: validated once at construction, torch-free, and the one
source of the command lines' defaults."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cloudseg.inference.cli import DEFAULTS, inference_spec
from cloudseg.inference.spec import InferenceSpec, MaskRule


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"resolution": 0}, "resolution=0 must be a pixel size"),
        ({"window_size": 100}, r"window_size 100 is not a positive multiple of 16 .*use e.g. 96"),
        ({"overlap": -1}, "overlap=-1 must be >= 0"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
    ],
)
def test_inference_spec_rejects_bad_values_with_the_fix(fields, message):
    with pytest.raises(ValueError, match=message):
        InferenceSpec(**fields)


def test_a_rule_is_checked_when_made_and_hashable():
    with pytest.raises(ValueError, match=r"cloud_threshold must be a probability in \(0, 1\)"):
        MaskRule(cloud_threshold=1.0)
    spec = InferenceSpec(rule=MaskRule(clear_threshold=0.9))
    assert {spec: 1}[InferenceSpec(rule=MaskRule(clear_threshold=0.9))] == 1
    assert spec.rule.tags() == {"CLOUD_THRESHOLD": "none", "CLEAR_THRESHOLD": 0.9}


def test_digest_covers_what_changes_the_mask_only():
    base = InferenceSpec()
    assert base.digest() == "6f1751af"  # masks cached before the rule existed keep their key
    assert InferenceSpec(device="cpu", batch_size=3, amp=False).digest() == base.digest()
    changed = [
        InferenceSpec(resolution=20),
        InferenceSpec(window_size=64),
        InferenceSpec(overlap=4),
        InferenceSpec(flips=True),
        InferenceSpec(rule=MaskRule(cloud_threshold=0.5)),
        InferenceSpec(rule=MaskRule(clear_threshold=0.9)),
    ]
    assert len({spec.digest() for spec in changed} | {base.digest()}) == len(changed) + 1


def test_command_line_defaults_are_the_spec_defaults():
    import argparse

    from cloudseg.inference.cli import _add_inference_arguments

    parser = argparse.ArgumentParser()
    _add_inference_arguments(parser)
    assert inference_spec(parser.parse_args([])) == DEFAULTS == InferenceSpec()
    args = parser.parse_args(["--clear-threshold", "0.8", "--flips", "--resolution", "20"])
    assert inference_spec(args) == InferenceSpec(
        resolution=20, flips=True, rule=MaskRule(clear_threshold=0.8)
    )


def test_the_rule_the_spec_and_the_registry_load_without_torch():
    code = (
        "import sys\n"
        "import composite.masking\n"
        "from cloudseg.inference.producers import producer_names\n"
        "producer_names()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
