"""Errors a user can act on. The CLI prints their message on one line and exits non-zero."""


class XSearchError(Exception):
    """Base class: the message is shown to the user as it is."""

    exit_code = 1


class UsageError(XSearchError):
    """The user asked for something that cannot be done as asked (unknown name, bad option)."""

    exit_code = 2


class ParameterError(UsageError):
    """A parameter has a value that cannot be used. `param` is its neutral name (`k`,
    `where`, `window`); each shell shows it in its own spelling (the CLI as `-k`, `--where`),
    so the message reads right for a Python, HTTP or command-line caller."""

    def __init__(self, param: str, problem: str) -> None:
        super().__init__(f"{param}: {problem}")
        self.param = param
        self.problem = problem


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
