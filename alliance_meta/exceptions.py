"""Exceptions and warnings raised by :mod:`alliance_meta`.

Every error is a subclass of :class:`ValueError` (through :class:`AllianceMetaError`)
so that code written against the standard library keeps working, and every warning
is a subclass of :class:`AllianceMetaWarning` so that a user can filter all of them
with one line::

    warnings.simplefilter("ignore", alliance_meta.exceptions.AllianceMetaWarning)
"""

from __future__ import annotations

__all__ = [
    "AllianceMetaError",
    "AllianceMetaWarning",
    "BoundaryWarning",
    "ConvergenceWarning",
    "DataOmittedWarning",
    "DependentEffectsWarning",
    "FewStudiesWarning",
    "InvalidStudyError",
    "ModelSpecificationError",
    "ModelSpecificationWarning",
    "NumericTextWarning",
]


class AllianceMetaError(ValueError):
    """Base class of every error raised by alliance_meta (a :class:`ValueError`)."""


class InvalidStudyError(AllianceMetaError):
    """A study's input is invalid.

    Parameters
    ----------
    message : str
        What is wrong.
    study : str or None
        The label of the offending study (or its 0-based row when it has no label).
    field : str or None
        The name of the offending field, e.g. ``"r"``, ``"sd1"`` or ``"variance"``.
    """

    def __init__(self, message: str, *, study: str | None = None, field: str | None = None):
        self.study = study
        self.field = field
        where = []
        if study is not None:
            where.append(f"study {study!r}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ModelSpecificationError(AllianceMetaError):
    """The requested model cannot be fitted (bad method, empty group, too few studies...)."""


class AllianceMetaWarning(UserWarning):
    """Base class of every warning issued by alliance_meta."""


class ConvergenceWarning(AllianceMetaWarning):
    """An iterative τ² estimator did not converge to the requested tolerance."""


class BoundaryWarning(AllianceMetaWarning):
    """An estimate lies on the boundary of its parameter space (e.g. a selection-model
    δ at its lower or upper bound, as metafor's ``selmodel`` warns)."""


class FewStudiesWarning(AllianceMetaWarning):
    """Too few studies for the requested quantity (e.g. k = 1: τ² is set to 0)."""


class ModelSpecificationWarning(AllianceMetaWarning):
    """The model was adjusted to be estimable, as metafor does with a warning
    (e.g. redundant moderator columns dropped from a meta-regression)."""


class NumericTextWarning(ModelSpecificationWarning):
    """A text moderator whose values are mostly numbers, but not all, was made
    categorical (as R makes such a column a factor): likely a typo in a numeric
    column (``"4O"`` for ``40``).  The warning names the values that are not
    numbers and their studies; declare the moderator categorical
    (``Moderator(name, "categorical")``, ``factor(x)`` in a formula) to say that
    it is meant, or correct the data."""


class DependentEffectsWarning(AllianceMetaWarning):
    """A univariate model was given several effect sizes of one study, which it
    treats as independent (its standard errors are then too small): use
    :func:`~alliance_meta.multilevel` or :func:`~alliance_meta.robust`."""


class DataOmittedWarning(AllianceMetaWarning):
    """Studies were omitted because ``nan_policy="omit"`` was requested."""
