"""Griffe extension: Sphinx roles in docstrings shown as code in the API reference.

The package's docstrings are NumPy style and cross-reference with Sphinx roles
(``:func:`~msc_response.study.load_study```), which mkdocstrings would print as written.
Each role becomes inline code of the name a reader types: the last component after ``~``
(as Sphinx shows it), else the full path. Links are not made: a role may name an object
the reference does not document, and a link to nowhere would fail the strict build.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|data|mod|exc|obj):`(~?)([\w.]+)`")


def as_code(text: str) -> str:
    """``:func:`~a.b.c``` -> ```c```; ``:class:`a.B``` -> ```a.B```."""
    return ROLE.sub(
        lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", text
    )


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = as_code(obj.docstring.value)
