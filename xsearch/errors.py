"""Errors a user can act on. The CLI prints their message on one line and exits non-zero."""


class XSearchError(Exception):
    """Base class: the message is shown to the user as it is."""

    exit_code = 1


class UsageError(XSearchError):
    """The user asked for something that cannot be done as asked (unknown name, bad option)."""

    exit_code = 2


class WeightsNotFound(XSearchError):
    """No AudioCLIP checkpoint was given or found."""

    exit_code = 2


class CheckpointError(XSearchError):
    """A checkpoint file exists but is not a usable AudioCLIP state dict."""

    exit_code = 2


class MediaError(XSearchError):
    """A media file could not be read or decoded."""


class DownloadError(XSearchError):
    """Fetching the official weights failed."""
