"""The executor's one domain error type.

Jobs, schedules and endpoints raise ``NotebenchError`` for a request that cannot be done; the API
answers it as JSON ``{status, message, field}`` with its HTTP status, in one place
(``api/base.py``, ``JSONErrors``).
"""

from __future__ import annotations


class NotebenchError(Exception):
    """Why a request cannot be done: the HTTP status it is answered with, the request field at
    fault (None: the request as a whole), a message for the user, and optionally an MLflow error
    code (the scoring paths answer in MLflow's shape)."""

    def __init__(self, status: int, field: str | None, message: str, error_code: str | None = None):
        super().__init__(message)
        self.status, self.field, self.message, self.error_code = status, field, message, error_code
        self.details: dict = {}  # more of the error body (a quota's limit and current use)

    def within(self, prefix: str) -> NotebenchError:
        """The same error for a request that nests this one's under ``prefix`` (e.g. a schedule's ``job``)."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        return NotebenchError(self.status, field, self.message, self.error_code)
