"""Forest and funnel plots (the optional ``plot`` extra: ``pip install 'alliance_meta[plot]'``).

This module is not imported by ``import alliance_meta``; matplotlib is imported only
when a plotting function is called, so the core library works without it.

Both functions return the matplotlib :class:`~matplotlib.figure.Figure` and accept an
``ax`` to draw into, so they compose into larger figures.  Every drawn element carries a
gid (:meth:`matplotlib.artist.Artist.get_gid`) so that it can be found again:

=========================  ============================================================
gid                        element
=========================  ============================================================
``"study-row"``            a study's square (forest) — one per study
``"study-ci"``             a study's confidence-interval whisker (forest)
``"study-label"``          a study's label in the left column (forest)
``"estimate-text"``        a row's "estimate [CI]" text in the right column (forest)
``"weight-text"``          a study's weight (%) in the right column (forest)
``"diamond-overall"``      the pooled estimate's diamond (forest)
``"diamond-subgroup"``     a subgroup's diamond (forest, subgroup results)
``"prediction-interval"``  the prediction-interval bar (forest)
``"null-line"``            the vertical reference line at the null (forest and funnel)
``"study-point"``          an observed study (funnel)
``"filled-study"``         a study imputed by trim-and-fill (funnel)
``"funnel-triangle"``      the pseudo-confidence region around the estimate (funnel)
``"contour-<p>"``          a significance contour region, e.g. ``"contour-0.05"`` (funnel)
=========================  ============================================================

Scales
------
With ``transform=True`` (the default) values are plotted on the **natural scale** —
correlations for Fisher's z (``ZCOR``), ratios for log ratios (``OR``, ``RR``,
``ROM``) — on an axis whose *spacing* is the analysis scale: a
``"function"``             scale with ``atanh``/``tanh`` for ``ZCOR`` and a ``"log"`` scale for
log ratios.  Confidence intervals that are symmetric on the analysis scale therefore
look symmetric, while data and tick labels are in r or in ratios.  With
``transform=False`` the analysis-scale values are plotted on a linear axis.
"""

from alliance_meta.plot.forest import ForestLayout, ForestRow, draw_forest, forest, forest_layout
from alliance_meta.plot.funnel import funnel

__all__ = ["ForestLayout", "ForestRow", "draw_forest", "forest", "forest_layout", "funnel"]
