"""Plots (the optional ``plot`` extra: ``pip install 'alliance_meta[plot]'``).

This module is not imported by ``import alliance_meta``; matplotlib is imported only
when a plotting function is called, so the core library works without it.

Each plot is one module with two functions: ``<plot>_layout`` computes what is
shown (positions, sizes, texts, lines) as data, without matplotlib, and ``<plot>``
draws it.  The drawing functions return the matplotlib
:class:`~matplotlib.figure.Figure` and accept an ``ax`` to draw into, so they
compose into larger figures.

=====================  ===========================================================
plot                   what it shows
=====================  ===========================================================
:func:`forest`         studies, subgroups and pooled estimates with their intervals
                       (multilevel fits: effects grouped by study)
:func:`funnel`         effects against standard errors (trim-and-fill, contours;
                       multilevel fits as metafor's ``funnel`` of ``rma.mv``)
:func:`bubble`         a meta-regression on one moderator, with CI and PI bands
                       (metafor's ``regplot``)
:func:`baujat`         contribution to heterogeneity against influence (``baujat``)
:func:`radial`         the Galbraith plot of a pooled result (``radial``)
:func:`profile`        the (restricted) log-likelihood over τ² (``profile``)
:func:`orchard`        effects and group estimates with CI and PI (Nakagawa et
                       al., 2021), for subgroup, meta-regression and multilevel fits
=====================  ===========================================================

:func:`selection_function` draws the estimated selection function of a selection
model (metafor's ``plot.rma.uni.selmodel``); it is also the results' ``plot()``.

Every drawn element carries a gid (:meth:`matplotlib.artist.Artist.get_gid`) so that
it can be found again; the forest and funnel plots use:

=============================  ========================================================
gid                            element
=============================  ========================================================
``"study-row"``                a study's square (forest) — one per study
``"study-ci"``                 a study's confidence-interval whisker (forest)
``"study-label"``              a study's label in the left column (forest)
``"column-text"``              a cell of an extra column (forest)
``"estimate-text"``            a row's "estimate [CI]" text in the right column (forest)
``"weight-text"``              a study's weight (%) in a weight column (forest)
``"weight-total"``             a pooled row's weight (forest)
``"weight-cluster"``           a study's weight on its header row (forest, multilevel)
``"header-text"``              a column header (forest)
``"diamond-overall"``          the pooled estimate's diamond (forest)
``"diamond-overall-common"``   the common-effect diamond (forest, ``common=True``)
``"diamond-subgroup"``         a subgroup's diamond (forest, subgroup results)
``"diamond-subgroup-common"``  a subgroup's common-effect diamond (forest)
``"prediction-interval"``      the prediction-interval bar (forest)
``"favours-left"``,            the favours labels under the axis (forest)
``"favours-right"``
``"null-line"``                the vertical reference line at the null (forest, funnel)
``"study-point"``              an observed study (funnel)
``"filled-study"``             a study imputed by trim-and-fill (funnel)
``"funnel-triangle"``          the pseudo-confidence region around the estimate (funnel)
``"contour-<p>"``              a significance contour region, e.g. ``"contour-0.05"``
=============================  ========================================================

The other plots list their gids in their Notes.

Scales
------
With ``transform=True`` (the default) values are plotted on the **natural scale** —
correlations for Fisher's z (``ZCOR``), ratios for log ratios (``OR``, ``RR``,
``ROM``) — on an axis whose *spacing* is the analysis scale: a ``"function"`` scale
with ``atanh``/``tanh`` for ``ZCOR`` and a ``"log"`` scale for log ratios.
Confidence intervals that are symmetric on the analysis scale therefore look
symmetric, while data and tick labels are in r or in ratios.  With
``transform=False`` the analysis-scale values are plotted on a linear axis.
"""

from alliance_meta.plot.baujat import BaujatLayout, baujat, baujat_layout
from alliance_meta.plot.bubble import BubbleLayout, bubble, bubble_layout
from alliance_meta.plot.forest import (
    ForestLayout,
    ForestRow,
    draw_forest,
    forest,
    forest_layout,
)
from alliance_meta.plot.funnel import funnel
from alliance_meta.plot.orchard import OrchardGroup, OrchardLayout, orchard, orchard_layout
from alliance_meta.plot.profile import ProfileLayout, profile, profile_layout
from alliance_meta.plot.radial import RadialLayout, radial, radial_layout
from alliance_meta.plot.selection import selection_function, selection_function_curve

__all__ = [
    "BaujatLayout",
    "BubbleLayout",
    "ForestLayout",
    "ForestRow",
    "OrchardGroup",
    "OrchardLayout",
    "ProfileLayout",
    "RadialLayout",
    "baujat",
    "baujat_layout",
    "bubble",
    "bubble_layout",
    "draw_forest",
    "forest",
    "forest_layout",
    "funnel",
    "orchard",
    "orchard_layout",
    "profile",
    "profile_layout",
    "radial",
    "radial_layout",
    "selection_function",
    "selection_function_curve",
]
