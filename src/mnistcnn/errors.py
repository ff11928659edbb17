"""The one exception type for mistakes a user can make; the CLI prints it as one line and exits 2."""


class MnistcnnError(Exception):
    """A user-facing error: the message says what is wrong and what to do next."""


class ConfigError(MnistcnnError):
    pass


class DataError(MnistcnnError):
    pass


class CheckpointError(MnistcnnError):
    pass
