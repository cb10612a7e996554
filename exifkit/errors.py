"""Errors that are the user's to fix, told apart from the kit's own bugs.

The command line prints a :class:`UserError` as one line naming the file or setting and exits 2;
anything else is a bug in the kit and keeps its traceback. The subclasses also derive from the
builtin a library caller would catch (``ValueError``, ``FileNotFoundError``).
"""


class UserError(Exception):
    """Something the user handed in or asked for cannot be used: a file, a folder, a setting."""


class SettingError(UserError, ValueError):
    """A profile, setting or argument that does not exist or does not fit."""


class MissingInputError(UserError, FileNotFoundError):
    """A file or folder the command needs is not there (a run not trained yet, a data folder)."""


class TooFewImagesError(UserError, ValueError):
    """There are too few usable images for what was asked (fitting, calibrating)."""
