"""One exception family for everything Conary reports to a user.

Library code raises these; only the CLI renders them, as one line (or JSON under --json).
Each error carries *what* failed, *where* (file, key path, package, step) and a *hint*.
"""

from __future__ import annotations


class ConaryError(Exception):
    """A failed operation. The CLI exits 1."""

    exit_code = 1

    def __init__(self, what: str, *, where: str | None = None, hint: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.where = where
        self.hint = hint

    def render(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.hint:
            text += f" (hint: {self.hint})"
        return text

    def to_json(self) -> dict[str, str | int | None]:
        return {
            "error": type(self).__name__,
            "what": self.what,
            "where": self.where,
            "hint": self.hint,
            "exit_code": self.exit_code,
        }

    def __str__(self) -> str:
        return self.render()

    def __reduce__(self) -> tuple[object, ...]:
        # pickled as its attributes: errors cross process boundaries (packing workers), and the
        # default (cls(*args)) would lose where and hint, or fail for subclasses with other signatures
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[ConaryError], args: tuple[object, ...], state: dict[str, object]) -> ConaryError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class InputError(ConaryError):
    """Bad usage or bad input (a malformed recipe, a bad argument). The CLI exits 2."""

    exit_code = 2


class MissingToolError(ConaryError):
    """An external program Conary needs is not installed."""

    exit_code = 1

    def __init__(self, tool: str, debian_package: str, *, purpose: str | None = None) -> None:
        why = f" (needed to {purpose})" if purpose else ""
        super().__init__(
            f"required tool '{tool}' not found{why}",
            hint=f"install it with: apt-get install {debian_package}",
        )
        self.tool = tool
        self.debian_package = debian_package


class NoSpaceError(ConaryError):
    """What an operation would write does not fit on the destination's filesystem."""
