"""The consensus reference on small arrays: agreement, disagreement ignored, detectors left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cloudseg.detectors.consensus import (
    DISPUTED,
    NO_PREDICTION,
    Detection,
    consensus,
    plan_detectors,
    reference_map,
    tally,
)
from cloudseg.labels import CLEAR, CLOUD_SHADOW, THICK_CLOUD, THIN_CLOUD

C, K, N, S, X = CLEAR, THICK_CLOUD, THIN_CLOUD, CLOUD_SHADOW, NO_PREDICTION
BINARY = ("clear", "thick_cloud")


def mask(*rows: list[int]) -> np.ndarray:
    return np.array(rows, dtype=np.uint8).reshape(len(rows), -1)


def test_consensus_module_does_not_import_torch():
    import cloudseg.detectors.consensus as module

    source = Path(module.__file__).read_text()
    assert "import torch" not in source and "from torch" not in source


def test_agreement_becomes_the_reference_and_disagreement_is_ignored_and_counted():
    ukis = Detection("ukis", mask([C, K, S, K], [C, C, X, S]))
    scl = Detection("scl", mask([C, N, S, C], [S, C, C, X]))
    cloud = consensus([ukis, scl], "cloud")
    # thick and thin are both "cloud": pixel (0,1) agrees; (0,3) is disputed
    assert cloud.positive.tolist() == [[False, True, False, False], [False, False, False, False]]
    assert cloud.disagreement.tolist() == [
        [False, False, False, True],
        [False, False, False, False],
    ]
    assert cloud.determined.sum() == 7
    shadow = consensus([ukis, scl], "shadow")
    assert shadow.disagreement.tolist() == [
        [False, False, False, False],
        [True, False, False, False],
    ]
    # where one detector has no prediction, the other's answer stands
    assert shadow.determined[1, 2] and not shadow.positive[1, 2]
    assert shadow.determined[1, 3] and shadow.positive[1, 3]
    picture = reference_map([ukis, scl])
    assert picture.tolist() == [[C, K, S, DISPUTED], [DISPUTED, C, C, S]]


def test_a_binary_detector_votes_on_cloud_only():
    ukis = Detection("ukis", mask([S, K, C]))
    s2cloudless = Detection("s2cloudless", mask([C, K, K]), emits=BINARY)
    assert s2cloudless.judges("cloud") and not s2cloudless.judges("shadow")
    assert not s2cloudless.judges("cloud_or_shadow")
    # its "clear" over ukis' shadow is no disagreement: it cannot say shadow
    either = consensus([ukis, s2cloudless], "cloud_or_shadow")
    assert either.voters == ("ukis",) and either.objectors == ("s2cloudless",)
    assert either.disagreement.tolist() == [[False, False, True]]
    cloud = consensus([ukis, s2cloudless], "cloud")
    assert cloud.disagreement.tolist() == [[False, False, True]]


def test_a_binary_detectors_cloud_disputes_a_clear_cloud_or_shadow_but_decides_nothing_alone():
    """Its "cloud" is a "cloud or shadow" too: where the voters say clear, the pixel is not
    clear consensus (no false alarm can be counted there); its "clear" never counts."""
    ukis = Detection("ukis", mask([C, C, K, S, X, X]))
    s2cloudless = Detection("s2cloudless", mask([K, C, K, K, K, C]), emits=BINARY)
    either = consensus([ukis, s2cloudless], "cloud_or_shadow")
    assert either.disagreement.tolist() == [[True, False, False, False, False, False]]
    assert either.determined.tolist() == [[False, True, True, True, False, False]]
    assert either.positive.tolist() == [[False, False, True, True, False, False]]
    assert reference_map([ukis, s2cloudless])[0, 0] == DISPUTED
    model = Detection("model", mask([K, K, K, S, C, C]))
    alarms = tally(model, [ukis, s2cloudless])[0].alarms
    assert (alarms.clear_pixels, alarms.called_cloud) == (1, 1)
    # scored against ukis alone (s2cloudless excluded), px0 is clear again
    assert consensus([ukis, s2cloudless], "cloud_or_shadow", exclude="s2cloudless").determined[0, 0]


def test_each_detector_is_scored_against_the_others_only():
    ukis = Detection("ukis", mask([K, K, C, C]))
    scl = Detection("scl", mask([K, C, C, K]))
    s2cloudless = Detection("s2cloudless", mask([K, K, C, X]), emits=BINARY)
    detections = [ukis, scl, s2cloudless]
    counts, voters = tally(ukis, detections)
    assert voters["cloud"] == ("scl", "s2cloudless")
    # reference without ukis: px0 cloud, px1 disputed, px2 clear, px3 scl alone says cloud
    cloud = counts.views["cloud"]
    assert (cloud.true_positive, cloud.false_positive, cloud.false_negative) == (1, 0, 1)
    assert cloud.true_negative == 1
    assert cloud.iou() == pytest.approx(0.5)
    assert cloud.f1() == pytest.approx(2 / 3)
    # a producer that is no detector (the checkpoint) is scored against all of them
    model = Detection("checkpoint", mask([K, C, C, S]))
    counts, voters = tally(model, detections)
    assert voters["cloud"] == ("ukis", "scl", "s2cloudless")
    assert counts.views["cloud"].scored == 2  # px1 and px3 disputed
    # false alarms on reference-clear pixels (cloud_or_shadow: ukis and scl agree clear at px2)
    assert counts.alarms.clear_pixels == 1 and counts.alarms.called_cloud == 0
    model_shadow = Detection("bad", mask([K, C, S, S]))
    alarms = tally(model_shadow, detections)[0].alarms
    assert alarms.share("shadow") == 1.0 and alarms.share("cloud") == 0.0


def test_a_view_no_other_detector_judges_is_not_scored():
    ukis = Detection("ukis", mask([S, C]))
    s2cloudless = Detection("s2cloudless", mask([C, C]), emits=BINARY)
    counts, voters = tally(ukis, [ukis, s2cloudless])
    assert voters["shadow"] == ()
    assert counts.views["shadow"].scored == 0 and counts.views["shadow"].iou() is None
    assert counts.views["cloud"].scored == 2


def test_a_detector_that_cannot_run_is_left_out_with_the_reason():
    plan = plan_detectors({"ukis": [], "s2cloudless": ["B01", "B05", "B09", "B10"], "scl": ["SCL"]})
    assert plan.run == ("ukis",)
    assert plan.left_out == {"s2cloudless": "lacks B01, B05, B09, B10", "scl": "lacks SCL"}


def test_masks_on_different_grids_are_refused():
    with pytest.raises(ValueError, match="b gave a"):
        consensus([Detection("a", mask([C, C])), Detection("b", mask([C]))], "cloud")
