"""Sphinx configuration: MyST Markdown pages, the API reference from docstrings, the furo theme.

Build with ``nox -s docs`` or ``sphinx-build -W --keep-going -b html docs docs/_build/html``; warnings
are errors, and every cross-reference must resolve (``nitpicky``). The build needs no network.
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

import sendchannel

project = "sendchannel"
author = "The sendchannel developers"
copyright = "the sendchannel developers"
release = sendchannel.__version__
version = ".".join(release.split(".")[:2])

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

html_theme = "furo"
html_title = f"sendchannel {release}"

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# Every reference must resolve, except to libraries whose inventories the offline build does not fetch.
nitpicky = True
_OUTSIDE = (
    "abc|asyncio|attr|attrs|collections|concurrent|contextlib|datetime|django|email|enum|google|"
    "googleapiclient|httpx|logging|os|pathlib|pytest|_pytest|redis|sqlite3|ssl|tenacity|threading|"
    "types|typing|typing_extensions|urllib|weakref|aiosmtplib|aiosmtpd|msal|smtplib"
)
nitpick_ignore_regex = [
    (r"py:.*", rf"({_OUTSIDE})(\..*)?"),
    # Private helpers that appear in signatures (the public names are resolved by _resolve_public_name).
    (r"py:.*", r"sendchannel(\.\w+)*\._\w+(\.\w+)*"),
    # Module-level names of private modules that docstrings mention.
    (r"py:(data|func)", r"(DEFAULT_PAUSE|default_key)"),
    # Type variables and aliases that only exist for the type checker.
    (r"py:.*", r"(T|P|R|ChannelFactory|RateUnit|Status|Costs|TokenProvider|TlsMode)"),
]


def _resolve_public_name(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.TextElement
) -> nodes.Element | None:
    """Point references to private modules (``sendchannel._limits.Rate``) and bare names at the public name.

    Annotations name the module a class is defined in; the reference documents it where users import it.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if not target or (not target.startswith("sendchannel.") and "." in target):
        return None
    short = target.rsplit(".", 1)[-1]
    domain: Any = env.get_domain("py")
    candidates = [
        name
        for name in domain.objects
        if name.startswith("sendchannel.") and name.rsplit(".", 1)[-1] == short
        and not re.search(r"\._", name)
    ]
    if len(candidates) != 1:
        return None
    resolved: nodes.Element | None = domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], candidates[0], node, contnode
    )
    return resolved


_ATTRIBUTE_DOCSTRINGS: dict[str, list[str]] = {}


def _hide_attribute_docstring(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """Keep napoleon from reading "text: more text" in an attribute's docstring as "type: description".

    The types come from the annotations; the docstrings are prose, and prose has colons.
    """
    if what in ("attribute", "property", "data"):
        _ATTRIBUTE_DOCSTRINGS[name] = lines[:]
        lines.clear()


def _restore_attribute_docstring(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    if name in _ATTRIBUTE_DOCSTRINGS:
        lines[:] = _ATTRIBUTE_DOCSTRINGS.pop(name)


def _drop_object_base(app: Sphinx, name: str, obj: object, options: object, bases: list[type]) -> None:
    """Show "Bases:" only when it says something (an error's place in the hierarchy): not ``object``, and not
    a private helper base (``Closing``, which only gives ``async with``)."""
    import sendchannel

    def private(base: type) -> bool:
        defined_here = base.__module__.startswith("sendchannel.")
        return defined_here and getattr(sendchannel, base.__name__, None) is not base

    bases[:] = [base for base in bases if base is not object and not private(base)]


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("missing-reference", _resolve_public_name)
    app.connect("autodoc-process-bases", _drop_object_base)
    # Napoleon processes docstrings at the default priority, 500.
    app.connect("autodoc-process-docstring", _hide_attribute_docstring, priority=400)
    app.connect("autodoc-process-docstring", _restore_attribute_docstring, priority=600)
    return {"parallel_read_safe": True}
