"""The one exception type for mistakes a user can make; the CLI prints it as one line and exits 2."""


class MnistcnnError(Exception):
    """A user-facing error: the message says what is wrong and what to do next."""


class ConfigError(MnistcnnError):
    """`key`: the config key the mistake is in, when it is one key's (serve's Train form marks that field)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class DataError(MnistcnnError):
    pass


class CheckpointError(MnistcnnError):
    pass


class ImageError(MnistcnnError):
    """A picture that cannot be read, or that shows no digit (mnistcnn.images)."""


class UnreadableImage(ImageError):
    """A picture a decoder or the ink finder failed on (any exception they raised, kept as the cause)."""

    status = 422


class TooManyPixels(ImageError):
    """A picture over the pixel limit, or over Pillow's decompression-bomb guard (the server answers 413)."""

    status = 413


class Interrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving last.pt; the CLI exits 128 + signal number.
    `finished`: every epoch was trained (the signal came during the final evaluation, save or plot)."""

    def __init__(self, signum: int, run_dir, finished: bool = False) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum, self.run_dir, self.finished = signum, run_dir, finished
