"""A Griffe extension that lets mkdocstrings read lstm_interp as Python itself imports it.

Three things differ between the package's source and what a static reader sees, and each is mended here, at load
time, without touching the package:

- ``lstm_interp.callbacks`` lives in the top-level ``callbacks/`` folder and is installed under ``lstm_interp`` by
  ``[tool.setuptools.package-dir]``; Griffe only looks inside ``lstm_interp/``, so the folder is loaded and grafted
  onto the package.
- Several exported functions share their name with the module that defines them (``lstm_interp.tracing.trace`` is
  both ``trace.py`` and the ``trace`` function it imports). Python binds the function; Griffe keeps the module. The
  top-level exports are pointed at the function, so ``::: lstm_interp.trace`` documents what users call.
- Packages that export lazily (``_EXPORTS = {name: module}`` and a PEP 562 ``__getattr__``) bind their names only
  at run time; each name is added as an alias of the object in its module.
- The docstrings are written with reStructuredText habits (``:class:`~x.Y``` roles, ``Example::`` literal blocks,
  ``.. code-block::``) inside Google-style sections. They are rewritten to Markdown: roles become optional
  cross-references (a link when the target is documented, plain code otherwise, never a broken-link warning).
  An ``Args:`` entry that documents several parameters at once (``start, end: the span``), which Google style has
  no form for, becomes one entry per parameter with the same text.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from typing import Any

from griffe import Alias, AliasResolutionError, CyclicAliasError, Extension, GriffeLoader, Module, Object, ObjectNode

PACKAGE = "lstm_interp"
# Subpackages installed from folders outside lstm_interp/ (pyproject.toml's package-dir), by member name.
GRAFTED = ("callbacks",)

# :class:`~lstm_interp.tracing.Trace`, :func:`trace`, :meth:`Trace.save`, :attr:`title <a.b.c>` ...
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|const):`(?P<body>[^`]+)`")
_EXAMPLE = re.compile(r"^(?P<indent>\s*)(?P<word>Examples?)::\s*$")
_LITERAL = re.compile(r"^(?P<text>.*\S)::\s*$")
_CODE_BLOCK = re.compile(r"^(?P<indent>\s*)\.\. code-block::\s*(?P<lang>\S*)\s*$")
_DOCTEST_FLAG = re.compile(r"\s*#\s*doctest:\s*\+[A-Z_, +]+")
_SECTION = re.compile(r"^(?P<indent>\s*)(?P<title>Args|Arguments|Parameters|Attributes|Other Parameters):\s*$")
# `start, end: text` or `start, end (int): text`, an entry naming several parameters.
_MULTI_ENTRY = re.compile(
    r"^(?P<indent>\s+)(?P<names>\*{0,2}\w+(?:, \*{0,2}\w+)+)(?P<type>\s*\([^)]*\))?:(?P<text>.*)$"
)


def _role(match: re.Match[str]) -> str:
    body = match["body"].strip()
    if "<" in body and body.endswith(">"):  # :func:`a title <lstm_interp.trace>`
        title, _, target = body[:-1].partition("<")
        title, target = title.strip(), target.strip()
    else:
        short = body.startswith("~")
        target = body.lstrip("~")
        title = target.rsplit(".", 1)[-1] if short else target
    target = target.removesuffix("()")
    # autorefs resolves `optional` references when the target was rendered and leaves plain text otherwise.
    return f'<autoref identifier="{target}" optional><code>{title}</code></autoref>'


def split_multi_entries(text: str) -> str:
    """``a, b: text`` in an ``Args:``-like section -> ``a: text`` and ``b: text`` (continuation lines repeated)."""
    lines = text.splitlines()
    out: list[str] = []
    section_indent: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        if line.strip() and section_indent is not None and indent <= section_indent:
            section_indent = None
        if m := _SECTION.match(line):
            section_indent = len(m["indent"])
        elif section_indent is not None and (m := _MULTI_ENTRY.match(line)):
            entry_indent = len(m["indent"])
            body = [m["text"]]
            # The entry's own lines: those indented deeper than it (a blank line only when such a line follows).
            while i + 1 < len(lines):
                following = next((line for line in lines[i + 1 :] if line.strip()), "")
                if len(following) - len(following.lstrip()) <= entry_indent:
                    break
                i += 1
                body.append(lines[i])
            for name in m["names"].split(", "):
                out.append(f"{m['indent']}{name}{m['type'] or ''}:{body[0]}")
                out.extend(body[1:])
            i += 1
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def rst_to_markdown(text: str) -> str:
    """The docstring ``text`` with its reStructuredText constructs written as Markdown a Google parser reads."""
    lines = split_multi_entries(text).splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := _CODE_BLOCK.match(line):
            # `.. code-block:: json` and its indented body -> a fenced block at the directive's indentation.
            indent, lang = m["indent"], m["lang"]
            body: list[str] = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
                body.append(lines[i])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            while body and not body[0].strip():
                body.pop(0)
            depth = min((len(b) - len(b.lstrip()) for b in body if b.strip()), default=0)
            out += [f"{indent}```{lang}", *(indent + b[depth:] for b in body), f"{indent}```", ""]
            continue
        if m := _EXAMPLE.match(line):
            # `Example::` is a Sphinx literal block; `Example:` is the Google section griffe renders as code.
            out.append(f"{m['indent']}{m['word']}:")
        elif (m := _LITERAL.match(line)) and not line.lstrip().startswith(">>>"):
            # `text::` introduces an indented literal block; Markdown reads the indented block as code already.
            out.append(f"{m['text']}:")
        else:
            out.append(_DOCTEST_FLAG.sub("", line) if ">>>" in line or "..." in line else line)
        i += 1
    return _ROLE.sub(_role, "\n".join(out))


class LstmInterpDocs(Extension):
    """Graft ``lstm_interp.callbacks``, point shadowed exports at their functions and translate the docstrings."""

    def on_instance(self, *, node: ast.AST | ObjectNode, obj: Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None and obj.path.startswith(PACKAGE):
            obj.docstring.value = rst_to_markdown(obj.docstring.value)

    def on_package(self, *, pkg: Module, loader: GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != PACKAGE:
            return
        for name in GRAFTED:
            if name not in pkg.members:
                _graft(pkg, loader, name)
        for module in _packages(pkg):
            _add_lazy_exports(module)
        for name in pkg.exports or ():
            member = pkg.members.get(name)
            if isinstance(member, Alias):
                _point_at_function(member, name)


def _graft(pkg: Module, loader: GriffeLoader, name: str) -> None:
    spec = importlib.util.find_spec(f"{PACKAGE}.{name}")
    if spec is None or spec.origin is None:
        raise RuntimeError(f"cannot find {PACKAGE}.{name} to document it: is lstm_interp installed (pip install -e .)?")
    # Griffe has no public call that loads a folder under another package's name; `parent=` makes every path in it
    # (lstm_interp.callbacks.lstm_activation_monitor...) what Python's import system gives.
    module = loader._load_module(name, Path(spec.origin), parent=pkg)
    pkg.set_member(name, module)


def _packages(pkg: Module) -> list[Module]:
    """``pkg`` and every package below it."""
    found = [pkg]
    for member in pkg.members.values():
        if isinstance(member, Module) and member.is_init_module:
            found += _packages(member)
    return found


def _add_lazy_exports(module: Module) -> None:
    """Alias each name of the module's ``_EXPORTS`` literal to the object in the module it is imported from."""
    exports = module.members.get("_EXPORTS")
    if exports is None or exports.is_alias or exports.value is None:
        return
    try:
        table = ast.literal_eval(str(exports.value))
    except (ValueError, SyntaxError):
        return  # not a literal: nothing static to read
    for name, source in table.items():
        if name not in module.members:
            module.set_member(name, Alias(name, f"{source}.{name}", parent=module))
    if module.exports is None:  # `__all__ = sorted(_EXPORTS)` cannot be read statically; it means these names
        module.exports = sorted(table)


def _point_at_function(alias: Alias, name: str) -> None:
    try:
        target = alias.final_target
    except (AliasResolutionError, CyclicAliasError):  # an external name: leave it to mkdocstrings
        return
    if isinstance(target, Module) and name in target.members and not target.members[name].is_module:
        alias.target = target.members[name]
