"""Typed errors. Each message says what is wrong and what to do; the CLI prints it as one line."""


class GanportError(Exception):
    """Base class for every error ganport reports to a user without a traceback (exit 1)."""


class UsageError(GanportError):
    """An option or argument the user gave cannot work (exit 2, like a misspelt flag)."""


class OutputError(GanportError):
    """A file or folder could not be written (full disk, read-only file system, permissions)."""


class DataError(GanportError):
    """A dataset is missing, corrupt or of the wrong shape."""


class ModelError(GanportError):
    """A model file is missing, unreadable or holds something ganport cannot handle."""


class UnsupportedLayerError(ModelError):
    """A model holds layers that no ganport converter supports."""


class ParityError(GanportError):
    """An export or a backend disagrees with the Keras reference beyond tolerance."""


class TrainingDivergedError(GanportError):
    """A loss became NaN or Inf during training."""


class RunFolderError(GanportError):
    """A run folder cannot be started, resumed or read as asked."""


class RuntimeUnavailableError(GanportError):
    """The requested execution device or provider is not available."""


class QualityGateError(GanportError):
    """A reduced-precision export lost more sample quality than allowed."""


class MissingExtraError(GanportError):
    """A command needs a package that comes with one of ganport's pip extras, and it is not installed."""


class BudgetError(GanportError):
    """An input declares, or a request asks for, more memory than the command's budget (ganport.budget)."""


def reason_of(error: BaseException, limit: int = 200) -> str:
    """A library's exception as the reason in one of ganport's lines: its message on one line, at most `limit`
    characters, or its class name when it has no message."""
    return " ".join(str(error).split())[:limit] or type(error).__name__
