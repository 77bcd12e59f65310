"""The public API as the package declares it: its ``__all__`` lists.

Both ``conf.py`` (which writes the API pages from it) and ``check_site.py`` (which
checks each of those pages in a browser) read the API from here, so a function that a
developer adds to a namespace's ``__all__`` gets a page, and a checked one, without any
edit to the documentation.
"""

import importlib
import inspect

PACKAGE = "sc_neuronedit"


# Namespaces in the order a workflow meets them (scanpy's pp, tl, pl); any other
# namespace the package exports follows in its __all__ order.
ORDER = ["pp", "tl", "pl", "metrics", "datasets"]


def sections():
    """``[(module, intro, [(public name, kind), ...]), ...]``: the top level first, then
    each namespace the top level exports; kind is ``"class"`` or ``"function"``."""
    top = importlib.import_module(PACKAGE)
    out = [(PACKAGE, "The model, the edit and file input.", _members(top, skip_modules=True))]
    namespaces = [name for name in top.__all__ if inspect.ismodule(getattr(top, name))]
    # sorted() is stable: namespaces not in ORDER keep their __all__ order.
    for name in sorted(namespaces, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
        module = getattr(top, name)
        out.append((module.__name__, _intro(module), _members(module)))
    return out


def _members(module, skip_modules=False):
    members = []
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            if skip_modules:
                continue
            raise TypeError(f"{module.__name__}.__all__ lists the module {name!r}; "
                            "the API pages document functions and classes only")
        members.append((name, "class" if inspect.isclass(obj) else "function"))
    return members


def _intro(module):
    # The first paragraph of the namespace's docstring says what it holds.
    doc = inspect.getdoc(module) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


def public_methods(cls):
    """Public methods and properties defined on the class itself: what its page must
    show. Dataclass fields and what is inherited from ``object`` are not among them."""
    return [name for name, value in vars(cls).items()
            if not name.startswith("_")
            and (inspect.isfunction(value) or isinstance(value, (property, classmethod, staticmethod)))]
