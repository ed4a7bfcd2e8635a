"""The suite-wide hunt for leaked secrets.

Every credential in the test suite is one of the sentinels in ``tests/sentinels.py``. While a test runs, this
module records:

- every object of a sendchannel class that could hold or echo a credential (channels, layers, stores, token
  providers, results, the Django backend...), by wrapping the classes' ``__init__``, so the ``repr()`` and
  ``str()`` of each can be checked when the test ends;
- every ``SendError`` (and subclass) created, so its ``str()``, ``repr()`` and ``reply`` can be checked;
- any text a test hands to :func:`note` (the CLI tests hand over every output of the command).

``tests/conftest.py`` installs it once, calls :func:`start` before each test and :func:`leaks` after it, and
also checks each test's captured stdout, stderr and log records.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import threading
from collections.abc import Callable
from typing import Any

import sendchannel
from sendchannel.errors import SendError
from tests import sentinels

# Plain data a user builds and reads back: a secret there would be the user's own (a password in a body).
_NOT_WATCHED = frozenset(
    {"Message", "Attachment", "ParsedAddress", "Outcome", "BulkReport", "ReceivedMessage", "Rate", "Limits"}
)

_lock = threading.Lock()
_objects: dict[int, object] = {}
_texts: list[str] = []
_installed = False
_enabled = True
# Session totals, printed at the end of the run: tests swept, objects and texts checked.
totals = {"tests": 0, "objects": 0, "views": 0, "texts": 0}


def _record(obj: object) -> None:
    if _enabled:
        with _lock:
            _objects.setdefault(id(obj), obj)


def _wrap(cls: type) -> None:
    if "__init__" in cls.__dict__:
        original: Callable[..., None] = cls.__dict__["__init__"]
    else:  # an exception class that takes its base's __init__

        def original(self: object, *args: Any, **kwargs: Any) -> None:
            super(cls, self).__init__(*args, **kwargs)  # type: ignore[misc]

    @functools.wraps(original)
    def __init__(self: object, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        _record(self)

    type.__setattr__(cls, "__init__", __init__)


def _watched_classes() -> list[type]:
    classes: list[type] = []
    for info in pkgutil.walk_packages(sendchannel.__path__, "sendchannel."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in list(vars(module).items()):
            # type(obj), not isinstance: Django's lazy settings answer isinstance by configuring themselves.
            if not issubclass(type(obj), type) or obj.__module__ != module.__name__:
                continue
            if name in _NOT_WATCHED or getattr(obj, "_is_protocol", False):
                continue
            # Every exception class of ours (a subclass is recorded through its base's wrapped __init__ too,
            # which is harmless); other classes when they define __init__.
            if issubclass(obj, BaseException) or "__init__" in obj.__dict__:
                classes.append(obj)
    return classes


def install() -> None:
    """Wrap the classes once per session (idempotent)."""
    global _installed
    if _installed:
        return
    for cls in _watched_classes():
        _wrap(cls)
    _installed = True


def start(*, enabled: bool = True) -> None:
    """Forget what the previous test recorded; record objects only if ``enabled``.

    Recording keeps every watched object alive until the test ends, so the few tests that measure memory or
    garbage collection are marked ``no_secret_sweep`` (their log records and output are still checked).
    """
    global _enabled
    _enabled = enabled
    with _lock:
        _objects.clear()
        _texts.clear()


def note(text: str) -> None:
    """Have ``text`` (output the test saw, e.g. a CLI run's) checked when the test ends."""
    with _lock:
        _texts.append(text)


def _views(obj: object) -> list[str]:
    views = [repr(obj), str(obj)]
    if isinstance(obj, SendError):
        views += [str(obj.reply or ""), str(obj.rejected or "")]
    if isinstance(obj, BaseException):
        # What a traceback would show: the arguments and the chain of causes (a library's own exception).
        views.append(repr(obj.args))
        chained = obj.__cause__ or (None if obj.__suppress_context__ else obj.__context__)
        if chained is not None:
            views.append(f"{chained!r} {chained}")
    return views


def leaks() -> list[tuple[str, str]]:
    """``(where, secret)`` for every sentinel found in what this test recorded."""
    with _lock:
        objects = list(_objects.values())
        texts = list(_texts)
    found: list[tuple[str, str]] = []
    totals["tests"] += 1
    totals["objects"] += len(objects)
    totals["texts"] += len(texts)
    for obj in objects:
        views = _views(obj)
        totals["views"] += len(views)
        for view in views:
            found += [(f"{type(obj).__name__}: {view[:200]}", secret) for secret in sentinels.leaked(view)]
    for text in texts:
        found += [(f"output: {text[:200]}", secret) for secret in sentinels.leaked(text)]
    return found


def watched() -> int:
    """How many objects the current test has recorded (for the sweep's own test)."""
    with _lock:
        return len(_objects)
