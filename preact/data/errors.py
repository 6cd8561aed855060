"""The one exception type the data package raises for bad input.

Every problem with the data (a missing or corrupt file, a wrong checksum, an unknown dataset, split
or config value) surfaces as a single `DataError` raised by `make_pipeline` before any device work,
with a message that names the file or value and says what was expected.
"""


class DataError(ValueError):
    """Bad data or a bad data setting; the message says what was found and what was expected."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A file, directory or prepared dataset that should exist does not."""
