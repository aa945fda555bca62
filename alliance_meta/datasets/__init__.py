"""Bundled datasets, each with its citation.

Three are real published datasets, dumped from the R package ``metadat`` (1.2):

- :func:`load_molloy2014`: conscientiousness and medication adherence (16 correlations);
- :func:`load_bcg`: the BCG vaccine trials (13 2×2 tables);
- :func:`load_normand1999`: specialist stroke care, length of stay (9 two-group means).

Two are NOT real: :func:`load_alliance_example` (one effect per study) and
:func:`load_alliance_dependent` (four dependent effects per study) are SIMULATED FOR
ILLUSTRATION (seed 20240611), shaped like a meta-analysis of therapist attachment
and the working alliance. They are not published data.

Examples
--------
>>> from alliance_meta import datasets
>>> ds = datasets.load_molloy2014()
>>> studies = ds.studies()  # Fisher's z of each correlation
>>> len(studies), studies.measure
(16, 'ZCOR')
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

import attrs
import pandas as pd

from alliance_meta._types import Measure
from alliance_meta.data.study import StudySet

__all__ = [
    "ALLIANCE_DEPENDENT_RHO",
    "ALLIANCE_EXAMPLE_SEED",
    "Dataset",
    "load_alliance_dependent",
    "load_alliance_example",
    "load_bcg",
    "load_molloy2014",
    "load_normand1999",
]

#: Seed of :func:`numpy.random.default_rng` that generated the SIMULATED alliance example.
ALLIANCE_EXAMPLE_SEED = 20240611


def _read_csv(filename: str) -> pd.DataFrame:
    with resources.files(__name__).joinpath(filename).open("r", encoding="utf-8") as fh:
        frame: pd.DataFrame = pd.read_csv(fh)
    return frame


@attrs.frozen
class Dataset:
    """A bundled dataset: a data frame, where it comes from, and how to analyse it.

    Parameters
    ----------
    name : str
        Short name, e.g. ``"molloy2014"``.
    data : pandas.DataFrame
        The data, one row per study (a fresh copy for every loader call).
    citation : str
        Full reference of the source (or, for simulated data, a statement saying so).
    description : str
        What the columns are.
    default_measure : str
        The measure :meth:`studies` uses by default.
    """

    name: str
    data: pd.DataFrame = attrs.field(eq=False, hash=False, repr=False)
    citation: str
    description: str
    default_measure: Measure
    _make_studies: Callable[[pd.DataFrame, Measure], StudySet] = attrs.field(
        eq=False, hash=False, repr=False, alias="make_studies"
    )

    def studies(self, measure: Measure | None = None) -> StudySet:
        """The studies as a :class:`~alliance_meta.StudySet`.

        Parameters
        ----------
        measure : str, optional
            Effect-size measure (see the loader for which are possible);
            :attr:`default_measure` when omitted.
        """
        return self._make_studies(self.data, measure or self.default_measure)


def _labelled(df: pd.DataFrame, authors: str, year: str) -> pd.DataFrame:
    out: pd.DataFrame = df.copy()
    out["label"] = out[authors].astype(str) + " (" + out[year].astype(str) + ")"
    return out


def _molloy_studies(df: pd.DataFrame, measure: Measure) -> StudySet:
    return StudySet.from_dataframe(
        _labelled(df, "authors", "year"),
        label="label",
        r="ri",
        n="ni",
        measure=measure,
        moderators=("year", "controls", "design", "a_measure", "c_measure", "meanage", "quality"),
    )


def load_molloy2014() -> Dataset:
    """Molloy, O'Carroll & Ferguson (2014): conscientiousness and medication adherence.

    16 studies of the correlation between conscientiousness and medication
    adherence (``dat.molloy2014`` of the R package metadat).

    Returns
    -------
    Dataset
        ``data`` columns: ``authors``, ``year``, ``ni`` (sample size), ``ri``
        (correlation), ``controls`` (control for confounders: none/multiple),
        ``design`` (cross-sectional/prospective), ``a_measure`` (adherence measure:
        self-report/other), ``c_measure`` (conscientiousness measure: NEO/other),
        ``meanage`` and ``quality`` (methodological quality, 1-3).
        ``studies(measure)`` accepts ``"ZCOR"`` (default), ``"COR"`` and ``"UCOR"``;
        labels are ``"<authors> (<year>)"``.

    References
    ----------
    Molloy, G. J., O'Carroll, R. E., & Ferguson, E. (2014). Conscientiousness and
    medication adherence: A meta-analysis. *Annals of Behavioral Medicine*, 47(1),
    92-101. https://doi.org/10.1007/s12160-013-9524-4
    """
    return Dataset(
        name="molloy2014",
        data=_read_csv("molloy2014.csv"),
        citation=(
            "Molloy, G. J., O'Carroll, R. E., & Ferguson, E. (2014). Conscientiousness and "
            "medication adherence: A meta-analysis. Annals of Behavioral Medicine, 47(1), "
            "92-101. https://doi.org/10.1007/s12160-013-9524-4"
        ),
        description=(
            "16 studies of the correlation (ri, with sample size ni) between "
            "conscientiousness and medication adherence, with study characteristics "
            "controls, design, a_measure, c_measure, meanage and quality. "
            "Source: dat.molloy2014 in the R package metadat."
        ),
        default_measure="ZCOR",
        make_studies=_molloy_studies,
    )


def _bcg_studies(df: pd.DataFrame, measure: Measure) -> StudySet:
    return StudySet.from_dataframe(
        _labelled(df, "author", "year"),
        label="label",
        a="tpos",
        b="tneg",
        c="cpos",
        d="cneg",
        measure=measure,
        moderators=("year", "ablat", "alloc"),
    )


def load_bcg() -> Dataset:
    """Colditz et al. (1994): the BCG vaccine trials against tuberculosis.

    13 trials as 2×2 tables (``dat.bcg`` of the R package metadat).

    Returns
    -------
    Dataset
        ``data`` columns: ``trial``, ``author``, ``year``, ``tpos``/``tneg`` (TB
        positive/negative in the vaccinated group), ``cpos``/``cneg`` (the same in
        the control group), ``ablat`` (absolute latitude) and ``alloc`` (allocation:
        random, alternate, systematic). ``studies(measure)`` accepts ``"RR"``
        (default, the log risk ratio), ``"OR"`` and ``"RD"``; labels are
        ``"<author> (<year>)"``.

    References
    ----------
    Colditz, G. A., Brewer, T. F., Berkey, C. S., Wilson, M. E., Burdick, E.,
    Fineberg, H. V., & Mosteller, F. (1994). Efficacy of BCG vaccine in the
    prevention of tuberculosis: Meta-analysis of the published literature. *JAMA*,
    271(9), 698-702. https://doi.org/10.1001/jama.1994.03510330076038
    """
    return Dataset(
        name="bcg",
        data=_read_csv("bcg.csv"),
        citation=(
            "Colditz, G. A., Brewer, T. F., Berkey, C. S., Wilson, M. E., Burdick, E., "
            "Fineberg, H. V., & Mosteller, F. (1994). Efficacy of BCG vaccine in the "
            "prevention of tuberculosis: Meta-analysis of the published literature. JAMA, "
            "271(9), 698-702. https://doi.org/10.1001/jama.1994.03510330076038"
        ),
        description=(
            "13 trials of the BCG vaccine: tuberculosis cases (tpos) and non-cases (tneg) "
            "among vaccinated, cpos and cneg among controls, with absolute latitude "
            "(ablat), year and treatment allocation (alloc). "
            "Source: dat.bcg in the R package metadat."
        ),
        default_measure="RR",
        make_studies=_bcg_studies,
    )


def _normand_studies(df: pd.DataFrame, measure: Measure) -> StudySet:
    return StudySet.from_dataframe(
        df,
        label="source",
        m1="m1i",
        sd1="sd1i",
        n1="n1i",
        m2="m2i",
        sd2="sd2i",
        n2="n2i",
        measure=measure,
    )


def load_normand1999() -> Dataset:
    """Normand (1999): specialist versus routine stroke care, length of hospital stay.

    9 studies as means, SDs and sizes of two groups (``dat.normand1999`` of the R
    package metadat); group 1 received specialist care, group 2 routine care.

    Returns
    -------
    Dataset
        ``data`` columns: ``study``, ``source``, ``n1i``, ``m1i``, ``sd1i``, ``n2i``,
        ``m2i``, ``sd2i`` (length of stay in days). ``studies(measure)`` accepts
        ``"SMD"`` (default, Hedges' g), ``"MD"``, ``"SMDH"`` and ``"ROM"``; labels
        are the ``source`` column.

    References
    ----------
    Normand, S.-L. T. (1999). Meta-analysis: Formulating, evaluating, combining,
    and reporting. *Statistics in Medicine*, 18(3), 321-359.
    https://doi.org/10.1002/(SICI)1097-0258(19990215)18:3<321::AID-SIM28>3.0.CO;2-P
    """
    return Dataset(
        name="normand1999",
        data=_read_csv("normand1999.csv"),
        citation=(
            "Normand, S.-L. T. (1999). Meta-analysis: Formulating, evaluating, combining, "
            "and reporting. Statistics in Medicine, 18(3), 321-359. "
            "https://doi.org/10.1002/(SICI)1097-0258(19990215)18:3<321::AID-SIM28>3.0.CO;2-P"
        ),
        description=(
            "9 studies of length of hospital stay (days) under specialist (m1i, sd1i, n1i) "
            "versus routine (m2i, sd2i, n2i) care after stroke. "
            "Source: dat.normand1999 in the R package metadat."
        ),
        default_measure="SMD",
        make_studies=_normand_studies,
    )


def _alliance_studies(df: pd.DataFrame, measure: Measure) -> StudySet:
    return StudySet.from_dataframe(
        df, label="study", r="r", n="n", measure=measure, moderators=("rater", "experience")
    )


def load_alliance_example() -> Dataset:
    """SIMULATED FOR ILLUSTRATION: therapist attachment anxiety and the working alliance.

    This is NOT published data. 12 studies were drawn at random with
    ``numpy.random.default_rng(20240611)`` by
    ``alliance_meta/datasets/_make_alliance_example.py``, to illustrate a subgroup
    analysis by who rated the alliance. The simulated true correlation is -0.31
    when the therapist rates the alliance and 0.04 when the patient does.

    Returns
    -------
    Dataset
        ``data`` columns: ``study`` (``"Simulated study 01"``...), ``r``, ``n``,
        ``rater`` (therapist/patient) and ``experience`` (simulated mean therapist
        experience in years, unrelated to ``r`` by construction).
        ``studies(measure)`` accepts ``"ZCOR"`` (default), ``"COR"`` and ``"UCOR"``.
    """
    return Dataset(
        name="alliance_example",
        data=_read_csv("alliance_example.csv"),
        citation=(
            "SIMULATED FOR ILLUSTRATION - not published data. Generated by "
            "alliance_meta/datasets/_make_alliance_example.py with "
            f"numpy.random.default_rng({ALLIANCE_EXAMPLE_SEED})."
        ),
        description=(
            "SIMULATED FOR ILLUSTRATION (seed "
            f"{ALLIANCE_EXAMPLE_SEED}), not published data: 12 made-up studies of the "
            "correlation r (sample size n) between therapist attachment anxiety and the "
            "working alliance, rated by the therapist or the patient (rater), with a "
            "simulated mean therapist experience in years (experience). True correlations "
            "used in the simulation: -0.31 (therapist-rated), 0.04 (patient-rated)."
        ),
        default_measure="ZCOR",
        make_studies=_alliance_studies,
    )


#: Correlation of the sampling errors of one study's effects in the SIMULATED
#: dependent-effects example (the ρ of a CHE working model).
ALLIANCE_DEPENDENT_RHO = 0.5


def _alliance_dependent_studies(df: pd.DataFrame, measure: Measure) -> StudySet:
    return StudySet.from_dataframe(
        df, study="study", label="effect", r="r", n="n", measure=measure,
        moderators=("dimension", "rater", "experience"),
    )  # fmt: skip


def load_alliance_dependent() -> Dataset:
    """SIMULATED FOR ILLUSTRATION: the alliance example with four effects per study.

    This is NOT published data.  The 12 studies of :func:`load_alliance_example`
    (same labels, sizes and experience) each give four correlations: therapist
    attachment anxiety and attachment avoidance, each with the therapist-rated and
    the patient-rated alliance (48 effects), drawn with
    ``numpy.random.default_rng(20240612)`` by
    ``alliance_meta/datasets/_make_alliance_example.py``.  The effects of one study
    are dependent twice over: they share a study-level random effect (SD 0.08 on
    Fisher's z, beside an effect-level SD of 0.05), and their sampling errors are
    correlated with ρ = 0.5 (:data:`ALLIANCE_DEPENDENT_RHO`), because they come from
    the same therapists and patients.  The simulated true correlations are -0.31
    (anxiety, therapist-rated), 0.04 (anxiety, patient-rated), -0.22 (avoidance,
    therapist-rated) and -0.06 (avoidance, patient-rated).

    Returns
    -------
    Dataset
        ``data`` columns: ``study``, ``effect`` (a unique label), ``dimension``
        (anxiety/avoidance), ``rater`` (therapist/patient), ``r``, ``n`` and
        ``experience``.  ``studies(measure)`` (``"ZCOR"`` by default) groups the
        effects by study (``StudySet.study_labels``).
    """
    return Dataset(
        name="alliance_dependent",
        data=_read_csv("alliance_dependent.csv"),
        citation=(
            "SIMULATED FOR ILLUSTRATION - not published data. Generated by "
            "alliance_meta/datasets/_make_alliance_example.py with "
            f"numpy.random.default_rng({ALLIANCE_EXAMPLE_SEED + 1})."
        ),
        description=(
            "SIMULATED FOR ILLUSTRATION (seed "
            f"{ALLIANCE_EXAMPLE_SEED + 1}), not published data: 12 made-up studies, each "
            "with four correlations (sample size n) between therapist attachment "
            "(dimension: anxiety or avoidance) and the working alliance rated by the "
            "therapist or the patient (rater); the effects of a study share a random "
            f"effect and their sampling errors correlate at {ALLIANCE_DEPENDENT_RHO}."
        ),
        default_measure="ZCOR",
        make_studies=_alliance_dependent_studies,
    )
