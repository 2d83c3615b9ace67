"""Exceptions with messages that name the file, key and problem."""


class CineReconError(Exception):
    """Base class of cinerecon errors shown to users without a traceback."""


class DataError(CineReconError, ValueError):
    """Bad input data: wrong shapes, missing keys, NaNs, unreadable or corrupted files."""


class ConfigError(CineReconError, ValueError):
    """Bad configuration or command-line values."""


class WeightsNotFoundError(CineReconError, FileNotFoundError):
    """Pretrained weights that must be supplied as a local file are missing."""


class OutputExistsError(CineReconError, FileExistsError):
    """Refusing to overwrite an existing output without --overwrite."""
