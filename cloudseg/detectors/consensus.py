"""A reference mask without hand labels: where independent detectors agree (numpy only, no torch).

Each detector's class raster (codes of :mod:`cloudseg.labels`, 255 = no prediction) votes, per
pixel, on three binary **views**: ``cloud`` (thick + thin cloud against everything else),
``shadow`` (cloud shadow against everything else) and ``cloud_or_shadow`` (both against clear,
what a composite excludes). A detector votes on a view only where it can give both answers: one
that cannot output shadow (s2cloudless) does not vote on ``shadow`` or ``cloud_or_shadow`` (its
"clear" may be shadow), but does on ``cloud``. Its positive answer still holds for a view it
answers in part: s2cloudless' "cloud" is a "cloud or shadow" too, so where it says cloud and the
voters say clear, that is a disagreement (it **objects**), the same pixel :func:`reference_map`
draws as disputed; alone it determines nothing. Where every voting detector gives the same
answer, that answer is the reference; where they differ the pixel is a **disagreement**, left out
of the scores and counted; where no detector votes it is undetermined.

A producer is scored against the consensus of the *other* detectors (``exclude=name``), so no
detector grades itself. Counts (not ratios) are kept so that scenes add up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from cloudseg.labels import (
    CLASS_NAMES,
    CLEAR,
    CLOUD_SHADOW,
    IGNORE_INDEX,
    THICK_CLOUD,
    THIN_CLOUD,
)

#: Class groups a view is made of, by code.
GROUPS: dict[str, tuple[int, ...]] = {
    "cloud": (THICK_CLOUD, THIN_CLOUD),
    "shadow": (CLOUD_SHADOW,),
}
#: View name -> the groups counted as positive (the rest, clear included, is negative).
VIEWS: dict[str, tuple[str, ...]] = {
    "cloud": ("cloud",),
    "shadow": ("shadow",),
    "cloud_or_shadow": ("cloud", "shadow"),
}
NO_PREDICTION = IGNORE_INDEX
#: In :func:`reference_map`: the detectors disagree here.
DISPUTED = 254


@dataclass(frozen=True)
class Detection:
    """One producer's class raster on a scene, and the classes it can output."""

    name: str
    classes: np.ndarray
    emits: tuple[str, ...] = CLASS_NAMES

    def judges(self, view: str) -> bool:
        """Whether this producer can answer ``view`` both ways (it outputs every group in it)."""
        return all(self._emitted & set(GROUPS[group]) for group in VIEWS[view])

    def objects(self, view: str) -> bool:
        """Whether this producer answers ``view`` only in part: it outputs some group of it but
        not all, so its positive answers hold and its negative ones do not."""
        return not self.judges(view) and any(
            self._emitted & set(GROUPS[group]) for group in VIEWS[view]
        )

    @property
    def _emitted(self) -> set[int]:
        return {code for code, name in enumerate(CLASS_NAMES) if name in self.emits}

    def positive(self, view: str) -> np.ndarray:
        return np.isin(self.classes, view_codes(view))

    @property
    def predicted(self) -> np.ndarray:
        return self.classes != NO_PREDICTION


def view_codes(view: str) -> list[int]:
    if view not in VIEWS:
        raise ValueError(f"Unknown view {view!r}; views: {list(VIEWS)}.")
    return [code for group in VIEWS[view] for code in GROUPS[group]]


@dataclass(frozen=True)
class ViewReference:
    """The consensus on one view: ``positive`` where ``determined``; who voted."""

    view: str
    positive: np.ndarray
    determined: np.ndarray
    disagreement: np.ndarray
    voters: tuple[str, ...]
    objectors: tuple[str, ...] = ()  # answer the view in part: their positives dispute a negative


def consensus(
    detections: Sequence[Detection], view: str, *, exclude: str | None = None
) -> ViewReference:
    """Where the detectors (but ``exclude``) that judge ``view`` agree, their common answer;
    a negative answer that a detector answering the view in part contradicts is a disagreement."""
    others = [d for d in detections if d.name != exclude]
    voters = [d for d in others if d.judges(view)]
    objectors = [d for d in others if d.objects(view)]
    shape = detections[0].classes.shape if detections else (0, 0)
    for detection in detections:
        if detection.classes.shape != shape:
            raise ValueError(
                f"Detector {detection.name} gave a {detection.classes.shape} mask; the others "
                f"are {shape}: all must be on the scene's grid."
            )
    positive_votes = np.zeros(shape, dtype=np.int16)
    negative_votes = np.zeros(shape, dtype=np.int16)
    for detection in voters:
        positive = detection.positive(view)
        predicted = detection.predicted
        positive_votes += positive & predicted
        negative_votes += ~positive & predicted
    objected = np.zeros(shape, dtype=bool)
    for detection in objectors:
        objected |= detection.positive(view) & detection.predicted
    disagreement = (negative_votes > 0) & ((positive_votes > 0) | objected)
    determined = ((positive_votes > 0) | (negative_votes > 0)) & ~disagreement
    return ViewReference(
        view,
        determined & (positive_votes > 0),
        determined,
        disagreement,
        tuple(d.name for d in voters),
        tuple(d.name for d in objectors),
    )


@dataclass
class ViewScore:
    """Pixel counts of one producer on one view against a reference (they add over scenes)."""

    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0
    true_negative: int = 0

    def add(self, other: ViewScore) -> None:
        self.true_positive += other.true_positive
        self.false_positive += other.false_positive
        self.false_negative += other.false_negative
        self.true_negative += other.true_negative

    @property
    def scored(self) -> int:
        return self.true_positive + self.false_positive + self.false_negative + self.true_negative

    def iou(self) -> float | None:
        union = self.true_positive + self.false_positive + self.false_negative
        return self.true_positive / union if union else None

    def f1(self) -> float | None:
        denominator = 2 * self.true_positive + self.false_positive + self.false_negative
        return 2 * self.true_positive / denominator if denominator else None


def score_view(detection: Detection, reference: ViewReference) -> ViewScore:
    """Counts of ``detection`` on the pixels where ``reference`` is determined and it predicts."""
    scored = reference.determined & detection.predicted
    predicted = detection.positive(reference.view)
    truth = reference.positive
    return ViewScore(
        true_positive=int((scored & predicted & truth).sum()),
        false_positive=int((scored & predicted & ~truth).sum()),
        false_negative=int((scored & ~predicted & truth).sum()),
        true_negative=int((scored & ~predicted & ~truth).sum()),
    )


@dataclass
class FalseAlarms:
    """Of the reference-clear pixels a producer predicts on, how many it calls cloud / shadow."""

    clear_pixels: int = 0
    called_cloud: int = 0
    called_shadow: int = 0

    def add(self, other: FalseAlarms) -> None:
        self.clear_pixels += other.clear_pixels
        self.called_cloud += other.called_cloud
        self.called_shadow += other.called_shadow

    def share(self, group: str) -> float | None:
        count = self.called_cloud if group == "cloud" else self.called_shadow
        return count / self.clear_pixels if self.clear_pixels else None


def false_alarms(detection: Detection, clear_reference: ViewReference) -> FalseAlarms:
    """On a ``cloud_or_shadow`` reference: reference-clear pixels called cloud or shadow."""
    if clear_reference.view != "cloud_or_shadow":
        raise ValueError("false_alarms needs the cloud_or_shadow reference (clear = negative).")
    clear = clear_reference.determined & ~clear_reference.positive & detection.predicted
    return FalseAlarms(
        clear_pixels=int(clear.sum()),
        called_cloud=int((clear & np.isin(detection.classes, GROUPS["cloud"])).sum()),
        called_shadow=int((clear & (detection.classes == CLOUD_SHADOW)).sum()),
    )


@dataclass
class ProducerTally:
    """Everything counted for one producer, per view, summed over the scenes it ran on."""

    views: dict[str, ViewScore] = field(default_factory=lambda: {v: ViewScore() for v in VIEWS})
    alarms: FalseAlarms = field(default_factory=FalseAlarms)

    def add(self, other: ProducerTally) -> None:
        for view, score in other.views.items():
            self.views[view].add(score)
        self.alarms.add(other.alarms)


def tally(detection: Detection, detections: Sequence[Detection]) -> tuple[ProducerTally, dict]:
    """Score ``detection`` on every view it judges against the others' consensus.

    Returns the counts and, per view, the detectors that formed its reference (empty: no other
    detector judges the view here, so nothing was scored).
    """
    result = ProducerTally()
    voters: dict[str, tuple[str, ...]] = {}
    for view in VIEWS:
        reference = consensus(detections, view, exclude=detection.name)
        voters[view] = reference.voters
        if detection.judges(view):
            result.views[view] = score_view(detection, reference)
        if view == "cloud_or_shadow":
            result.alarms = false_alarms(detection, reference)
    return result, voters


def reference_map(detections: Sequence[Detection]) -> np.ndarray:
    """The all-detector consensus as one class raster, for pictures: clear, thick_cloud (any
    cloud), cloud_shadow where determined; ``DISPUTED`` where detectors disagree on any view;
    ``NO_PREDICTION`` where no detector says anything."""
    cloud = consensus(detections, "cloud")
    shadow = consensus(detections, "shadow")
    either = consensus(detections, "cloud_or_shadow")
    out = np.full(detections[0].classes.shape, NO_PREDICTION, dtype=np.uint8)
    out[either.determined & ~either.positive] = CLEAR
    out[cloud.determined & cloud.positive] = THICK_CLOUD
    out[shadow.determined & shadow.positive & ~(cloud.determined & cloud.positive)] = CLOUD_SHADOW
    disputed = cloud.disagreement | shadow.disagreement | either.disagreement
    out[disputed] = DISPUTED
    return out


@dataclass(frozen=True)
class DetectorPlan:
    """Which detectors run on a scene, and why the others do not."""

    run: tuple[str, ...]
    left_out: Mapping[str, str]


def plan_detectors(
    missing: Mapping[str, Sequence[str]],
) -> DetectorPlan:
    """From each detector's missing inputs on a scene (empty: it runs), who runs and why not."""
    run = tuple(name for name, lacks in missing.items() if not lacks)
    left_out = {name: f"lacks {', '.join(lacks)}" for name, lacks in missing.items() if lacks}
    return DetectorPlan(run, left_out)
