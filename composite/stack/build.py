"""The whole assembly: find, open, filter and deduplicate (see :mod:`composite.stack`)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from cloudseg.sentinel2.errors import SCENE_READ_ERRORS, SceneError
from cloudseg.sentinel2.sources import is_remote
from composite.stack.description import describe_candidate, source_text
from composite.stack.discovery import list_candidates
from composite.stack.filters import deduplicate, filter_reasons, unique_ids
from composite.stack.scenes import SkippedScene, Stack, StackScene
from composite.stack.settings import StackSettings

log = logging.getLogger(__name__)


def build_stack(settings: StackSettings, *, progress: bool = True) -> Stack:
    """Find, open, filter and deduplicate the scenes of ``settings``; see the module docstring."""
    candidates = list_candidates(settings)
    scenes: list[StackScene] = []
    skipped: list[SkippedScene] = []
    for candidate in tqdm(candidates, desc="open scenes", unit="scene", disable=not progress):
        try:
            scenes.append(describe_candidate(candidate))
        except SCENE_READ_ERRORS as err:
            source = source_text(candidate, None)
            listed = not isinstance(settings.source, str)  # an explicit list of scenes
            if listed and not is_remote(source) and not Path(source).exists():
                log.warning(
                    "stack.source lists %s, which does not exist: the composite goes on without "
                    "it. Fix the path in stack.source if the scene belongs in the stack.",
                    source,
                )
            else:
                log.warning("Skipping unreadable scene %s: %s", source, err)
            skipped.append(SkippedScene(source, str(err)))
    filtered: Counter[str] = Counter()
    passed = []
    for scene in scenes:
        reason = filter_reasons(scene, settings)
        if reason is None:
            passed.append(scene)
        else:
            filtered[reason] += 1
    unknown_cover = sum(scene.cloud_cover is None for scene in passed)
    if settings.max_cloud_cover is not None and unknown_cover:
        log.info(
            "%d scenes carry no cloud cover in their metadata; max_cloud_cover=%g kept them.",
            unknown_cover, settings.max_cloud_cover,
        )  # fmt: skip
    duplicates: list[tuple[str, str]] = []
    if settings.deduplicate:
        try:
            passed, duplicates = deduplicate(passed)
        except SCENE_READ_ERRORS as err:
            raise SceneError(f"Could not compare duplicate overpasses: {err}") from err
    passed = unique_ids(sorted(passed, key=lambda scene: (scene.datetime, scene.source)))
    stack = Stack(passed, skipped, duplicates, dict(filtered))
    if skipped:
        log.warning(
            "%d of %d scenes were unreadable and skipped (listed in the run JSON).",
            len(skipped), len(candidates),
        )  # fmt: skip
    log.info(
        "Stack: %d scenes (%d unreadable, %d duplicate overpasses, filtered out: %s).",
        len(stack), len(skipped), len(duplicates), dict(filtered) or "none",
    )  # fmt: skip
    if not stack.scenes:
        raise ValueError(
            f"No scenes left in the stack from {settings.source}: {len(candidates)} found, "
            f"{len(skipped)} unreadable, filtered out {dict(filtered)}, {len(duplicates)} "
            "duplicates. Loosen stack.years/months/tile/bbox/max_cloud_cover or check the source."
        )
    return stack
