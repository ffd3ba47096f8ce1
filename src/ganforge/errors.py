"""User-facing errors: the CLI prints these as one line and exits with code 2."""


class GanforgeError(Exception):
    """A problem with the user's input (option, config, file), not a bug in ganforge."""


class DataError(GanforgeError):
    """A dataset file is missing, corrupt or not what was expected."""


class DownloadError(DataError):
    """No mirror delivered a file with the expected checksum."""


class NotStackable(GanforgeError):
    """These runs cannot share one stacked computation (a sweep); each can train alone."""
