"""Errors a user can act on. Each message names what is wrong and how to fix it."""


class JobError(Exception):
    """A job that cannot run as specified (spec, input, model or output). Raised before any Ray
    work; the CLI prints the message and exits with status 2."""


class RowError(Exception):
    """One row cannot be processed (null text, a failing forward pass). Handled by `on_error`."""
