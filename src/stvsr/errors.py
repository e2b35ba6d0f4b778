"""User-facing errors.

Every error a user can cause (bad path, corrupt video, wrong checkpoint, ...) is raised as
:class:`StvsrError` with a one-line message that says what went wrong and what to do. The CLI
prints ``error: <message>`` and exits with status 2 instead of a traceback.
"""

from __future__ import annotations


class StvsrError(RuntimeError):
    """An error caused by the user's input; its message is one line and actionable."""


class CheckpointError(StvsrError):
    """A checkpoint that does not fit the model it is loaded into."""


class VideoError(StvsrError):
    """A video or frame folder that cannot be read or written."""


class DataError(StvsrError):
    """A dataset folder that is missing or malformed."""
