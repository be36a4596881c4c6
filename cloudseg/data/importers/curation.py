"""The curation list: which scenes enter the dataset, decided per scene with a reason.

It mirrors the seed's hand selection of scenes whose product mask (SCL, s2cloudless) was accurate.
A CSV with columns ``scene_id,decision,reason``; ``decision`` is ``accept`` or ``reject``::

    scene_id,decision,reason
    29RKH_20200219,accept,SCL matches the cirrus in the north-east
    33TVM_20150731,reject,s2cloudless misses the thin cloud edges

Rejected scenes are still written and listed in the manifest (``curation=rejected`` with the
reason) but never trained on; scenes the list does not mention get the importer's default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cloudseg.data.manifest import read_manifest, write_manifest

DECISIONS: dict[str, str] = {"accept": "accepted", "reject": "rejected"}
CURATION_COLUMNS = ("scene_id", "decision", "reason")


@dataclass(frozen=True)
class Decision:
    status: str  # a manifest curation status: accepted / rejected / pending
    reason: str


class CurationList:
    """Per-scene accept/reject decisions, read from a CSV (see the module docstring)."""

    def __init__(self, decisions: dict[str, Decision], source: str = "") -> None:
        self.decisions = decisions
        self.source = source
        self.used: set[str] = set()

    @classmethod
    def read(cls, path: str | os.PathLike) -> CurationList:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"Curation list {path} does not exist.")
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = [c for c in ("scene_id", "decision") if c not in frame.columns]
        if missing:
            raise ValueError(
                f"Curation list {path} lacks columns {missing}; expected {list(CURATION_COLUMNS)}."
            )
        decisions: dict[str, Decision] = {}
        for line, record in enumerate(frame.to_dict("records"), start=2):
            scene_id = record["scene_id"].strip()
            decision = record["decision"].strip().lower()
            if decision not in DECISIONS:
                raise ValueError(
                    f"Curation list {path} line {line} (scene {scene_id}): decision "
                    f"{record['decision']!r} is not one of {list(DECISIONS)}."
                )
            if scene_id in decisions:
                raise ValueError(f"Curation list {path} line {line}: scene {scene_id} is repeated.")
            decisions[scene_id] = Decision(DECISIONS[decision], record.get("reason", "").strip())
        return cls(decisions, source=str(path))

    def decide(self, scene_id: str, default: str) -> Decision:
        """The decision for a scene, or ``default`` status (no reason) if the list omits it."""
        self.used.add(scene_id)
        return self.decisions.get(scene_id, Decision(default, ""))

    def unused(self) -> list[str]:
        """Scene ids the list names that no import asked about (typos, scenes not imported)."""
        return sorted(set(self.decisions) - self.used)


def apply_curation(root: str | os.PathLike, curation: CurationList) -> pd.DataFrame:
    """Set ``curation``/``curation_reason`` in an existing dataset's manifest from a list.

    A scene that becomes accepted must have a mask; an unknown scene id is an error.
    """
    root = Path(root)
    frame = read_manifest(root, check_files=False)
    known = set(frame["scene_id"])
    unknown = sorted(set(curation.decisions) - known)
    if unknown:
        raise ValueError(f"Curation list {curation.source} names scenes not in {root}: {unknown}.")
    for index, scene_id in frame["scene_id"].items():
        if scene_id not in curation.decisions:
            continue
        decision = curation.decide(scene_id, default="pending")
        if decision.status == "accepted" and not frame.at[index, "mask_path"]:
            raise ValueError(
                f"Scene {scene_id} cannot be accepted: it has no mask in {root}. Re-import it "
                f"with labels first."
            )
        frame.at[index, "curation"] = decision.status
        frame.at[index, "curation_reason"] = decision.reason
        if decision.status != "accepted":
            frame.at[index, "split"] = ""
    write_manifest(frame, root)
    return frame
