"""Derived versions: a stored version transformed by a named, versioned recipe (cast,
prune, a team's own through the `modelvc.recipes` entry points), recorded as
`derived_from` in the new version's lineage and checkable by making it again
(docs/derive.md)."""

from .recipe import GROUP, Applied, Recipe, load, names
from .run import CheckResult, Derived, FileCheck, check, derive

__all__ = ["GROUP", "Applied", "CheckResult", "Derived", "FileCheck", "Recipe", "check",
           "derive", "load", "names"]
