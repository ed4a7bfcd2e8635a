"""The one database error the layer adds: a constraint that refused a row, whatever the engine."""

from __future__ import annotations

__all__ = ["ConstraintError"]


class ConstraintError(Exception):
    """A UNIQUE, PRIMARY KEY, FOREIGN KEY or CHECK constraint refused a statement (SQLite or PostgreSQL).

    Stores catch it to tell a conflict (another process inserted the same key first) from a failure. The
    message names the constraint only: PostgreSQL's detail, which quotes the key's values, is left out.
    """
