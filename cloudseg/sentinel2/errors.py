"""The project's errors: one root, and what makes a scene unreadable.

- :class:`CloudfreeError`: the root of every error the project raises on purpose (bad input it
  found and explained), so callers can tell them from bugs;
- :class:`SceneError`: a scene cannot be opened or read (the message names the file and the fix);
- :class:`UnreadableScene`: one scene of a stack failed while it was being read (names it);
- :data:`SCENE_READ_ERRORS`: the errors that make one scene unusable without saying anything about
  the others (a damaged or missing file), which a run skips the scene for. Anything else is a bug
  or a configuration error and propagates.
"""

from __future__ import annotations

from rasterio.errors import RasterioError


class CloudfreeError(Exception):
    """Root of the errors cloudseg and composite raise on purpose."""


class SceneError(CloudfreeError, ValueError):
    """A scene cannot be opened or read; the message names the file or value and the fix."""


class UnreadableScene(CloudfreeError):
    """A scene of a stack could not be read (while making its mask or reading a window)."""

    def __init__(self, scene_id: str, error: Exception) -> None:
        super().__init__(f"{scene_id}: {type(error).__name__}: {error}")
        self.scene_id = scene_id
        self.error = error


#: Errors of reading one scene: it is skipped, the others go on.
SCENE_READ_ERRORS: tuple[type[Exception], ...] = (SceneError, RasterioError, OSError)
