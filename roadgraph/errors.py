"""Errors raised by the road-graph loaders."""

from __future__ import annotations


class NetworkFileError(ValueError):
    """A network or detector file that cannot be used.

    The message names the file, the line or element where known, and what was expected, so the
    CLI can print it as the one-line reason.
    """

    def __init__(self, path: str, problem: str, *, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.line = line
        self.problem = problem
