"""``control=``: metafor's stopping rule for the iterative τ² estimators.

alliance_meta solves the iterative estimators (ML, REML, EB, PM, PMM) to 1e-10
relative by default, so that its numbers are the estimators' exact values.  metafor
stops earlier by default (Fisher scoring until τ² changes by less than 1e-5;
``uniroot`` to ``.Machine$double.eps^0.25``), so a published analysis run with
metafor's defaults can differ from the exact values in the fourth or fifth digit.
``control=Control()`` reproduces metafor's default output; ``Control(threshold=...,
tol=..., maxiter=...)`` any other ``control = list(...)`` of ``rma.uni``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias, TypedDict

import attrs
import numpy as np

from alliance_meta.core.stopping import StopRule
from alliance_meta.exceptions import ModelSpecificationError

__all__ = ["Control", "ControlDict", "ControlSpec", "as_control", "as_rule"]

_EPS = float(np.finfo(np.float64).eps)


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, (int, float)) and value > 0):
        raise ModelSpecificationError(f"control {attribute.name} must be > 0, got {value!r}")


def _maxiter(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ModelSpecificationError(f"control maxiter must be an integer >= 1, got {value!r}")


@attrs.frozen
class Control:
    """metafor's ``control`` of ``rma.uni``: where its iterative τ² searches stop.

    Parameters
    ----------
    threshold : float
        Fisher scoring (ML, REML, EB) stops when τ² changes by at most this
        (metafor's ``threshold``, default 1e-5).
    tol : float
        Tolerance of R's ``uniroot`` for PM and PMM, and of ML/REML's ``ll0check``
        (metafor's ``tol``, default ``.Machine$double.eps^0.25`` ≈ 1.22e-4).
    maxiter : int
        Most Fisher-scoring steps (or ``uniroot`` iterations); more do not converge
        (metafor's ``maxiter``, default 100).

    Notes
    -----
    ``Control()`` is metafor's default control: a model fitted with it gives the
    numbers ``rma(yi, vi)`` prints with its defaults (τ², and everything that
    follows from it).  Without ``control`` the estimators are solved to 1e-10
    relative instead (metafor with ``control = list(threshold = 1e-12, tol =
    1e-12)`` gives the same).  ML, REML and EB start from the Hedges estimate, as
    metafor does; see :mod:`alliance_meta.core.stopping` for the algorithms.
    The closed-form estimators (DL, HE, HS, HSk, SJ) and EE are not affected.

    Examples
    --------
    >>> import alliance_meta as am
    >>> yi, vi = [0.1, 0.3, 0.35, 0.2, 0.6], [0.01, 0.02, 0.015, 0.01, 0.03]
    >>> exact = am.random_effects(yi=yi, vi=vi)
    >>> as_metafor = am.random_effects(yi=yi, vi=vi, control=am.Control())
    >>> abs(exact.tau2 - as_metafor.tau2) < 1e-5
    True
    """

    threshold: float = attrs.field(default=1e-5, validator=_positive)
    tol: float = attrs.field(default=_EPS**0.25, validator=_positive)
    maxiter: int = attrs.field(default=100, validator=_maxiter)

    def to_rule(self) -> StopRule:
        """The core's :class:`~alliance_meta.core.stopping.StopRule`."""
        return StopRule(float(self.threshold), float(self.tol), int(self.maxiter))


class ControlDict(TypedDict, total=False):
    """``control`` as a mapping, as metafor's ``control = list(...)``."""

    threshold: float
    tol: float
    maxiter: int


#: What ``control=`` takes: a :class:`Control`, a mapping of its fields, or None.
ControlSpec: TypeAlias = "Control | ControlDict | Mapping[str, float] | None"


def as_control(control: object) -> Control | None:
    """A :class:`Control` from ``control=`` (a Control, a mapping, or None)."""
    if control is None or isinstance(control, Control):
        return control
    if isinstance(control, Mapping):
        unknown = sorted(set(control) - {"threshold", "tol", "maxiter"})
        if unknown:
            raise ModelSpecificationError(
                f"unknown control setting {unknown[0]!r}; expected threshold, tol, maxiter"
            )
        return Control(**control)
    raise ModelSpecificationError(
        f"control must be a Control, a mapping or None, not {type(control).__name__}"
    )


def as_rule(control: Control | None) -> StopRule | None:
    """The core's stopping rule of a Control (None: the exact root)."""
    return None if control is None else control.to_rule()
