"""Generate ``alliance_example.csv``: a SIMULATED dataset, for illustration only.

The data are NOT published results. They are drawn at random, with the fixed seed
``SEED`` of :func:`numpy.random.default_rng`, to look like a meta-analysis of the
correlation between therapist attachment anxiety and the working alliance, where
the alliance is rated either by the therapist or by the patient.

Design (all on Fisher's z scale):

* 12 studies, 6 with therapist-rated and 6 with patient-rated alliance;
* total sample sizes uniform on 30..220;
* mean therapist experience (years), uniform on 2..18, one decimal; it has no
  effect on the simulated correlations;
* true study effects ``atanh(rho_g) + N(0, 0.08^2)`` with ``rho_g = -0.31``
  (therapist) and ``rho_g = 0.04`` (patient);
* observed ``z ~ N(true, 1/(n - 3))``; then, within each rater group, every z is
  shifted by the same amount so that the group's inverse-variance mean z equals
  ``atanh(rho_g)`` exactly; ``r = tanh(z)`` is rounded to 2 decimals as papers
  report it.

The dependent-effects version, ``alliance_dependent.csv`` (:func:`make_dependent`),
gives the same 12 studies (labels, sizes, experience) four effects each: the
therapist- and patient-rated alliance, each correlated with therapist attachment
anxiety and with attachment avoidance (48 effects):

* true effects ``atanh(rho_g) + u_study + u_effect`` with ``u_study ~ N(0, 0.08^2)``
  shared by the study's four effects and ``u_effect ~ N(0, 0.05^2)``, and
  ``rho_g`` -0.31 / 0.04 (anxiety, therapist / patient) and -0.22 / -0.06
  (avoidance);
* sampling errors of one study drawn jointly, with variance ``1/(n - 3)`` and a
  within-study correlation of ``RHO_WITHIN = 0.5`` (the effects share the
  study's therapists and patients);
* each (dimension, rater) group shifted as above, so that its inverse-variance mean
  z equals ``atanh(rho_g)``; ``r`` rounded to 2 decimals.

Run ``python -m alliance_meta.datasets._make_alliance_example`` to regenerate both
files; the output is deterministic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20240611
TARGET = {"therapist": -0.31, "patient": 0.04}
TAU_Z = 0.08
K_PER_GROUP = 6


def make() -> pd.DataFrame:
    """Simulate the alliance example (deterministic for ``SEED``)."""
    rng = np.random.default_rng(SEED)
    k = 2 * K_PER_GROUP
    rater = np.array(["therapist", "patient"] * K_PER_GROUP)
    n = rng.integers(30, 221, size=k)
    experience = np.round(rng.uniform(2.0, 18.0, size=k), 1)
    target_z = np.arctanh(np.array([TARGET[g] for g in rater]))
    true_z = target_z + rng.normal(0.0, TAU_Z, size=k)
    z = rng.normal(true_z, 1.0 / np.sqrt(n - 3.0))
    w = n - 3.0
    for g, rho in TARGET.items():
        idx = rater == g
        z[idx] += np.arctanh(rho) - np.sum(w[idx] * z[idx]) / np.sum(w[idx])
    r = np.round(np.tanh(z), 2)
    labels = [f"Simulated study {i + 1:02d}" for i in range(k)]
    columns = {"study": labels, "r": r, "n": n, "rater": rater, "experience": experience}
    frame: pd.DataFrame = pd.DataFrame(columns)
    return frame


#: Correlations of the dependent-effects version, by (dimension, rater).
TARGET_DEPENDENT = {
    ("anxiety", "therapist"): -0.31,
    ("anxiety", "patient"): 0.04,
    ("avoidance", "therapist"): -0.22,
    ("avoidance", "patient"): -0.06,
}
#: Between-study and within-study (effect-level) SDs of the true z, and the
#: correlation of the sampling errors of one study's effects.
TAU_STUDY, TAU_EFFECT, RHO_WITHIN = 0.08, 0.05, 0.5


def make_dependent() -> pd.DataFrame:
    """Simulate the dependent-effects version (deterministic for ``SEED``)."""
    base = make()
    rng = np.random.default_rng(SEED + 1)
    cells = list(TARGET_DEPENDENT)
    k, c = len(base), len(cells)
    n = base["n"].to_numpy()
    target_z = np.arctanh(np.array([TARGET_DEPENDENT[cell] for cell in cells]))
    true_z = (
        target_z[None, :]
        + rng.normal(0.0, TAU_STUDY, size=(k, 1))
        + rng.normal(0.0, TAU_EFFECT, size=(k, c))
    )
    corr = np.full((c, c), RHO_WITHIN) + (1.0 - RHO_WITHIN) * np.eye(c)
    chol = np.linalg.cholesky(corr)
    z = true_z + (rng.standard_normal((k, c)) @ chol.T) / np.sqrt(n - 3.0)[:, None]
    w = np.repeat((n - 3.0)[:, None], c, axis=1)
    for j, cell in enumerate(cells):
        z[:, j] += np.arctanh(TARGET_DEPENDENT[cell]) - np.sum(w[:, j] * z[:, j]) / np.sum(
            w[:, j]
        )
    rows = []
    for i in range(k):
        for j, (dimension, rater) in enumerate(cells):
            rows.append({
                "study": base["study"][i],
                "effect": f"{base['study'][i]}: {dimension}, {rater}-rated",
                "dimension": dimension,
                "rater": rater,
                "r": round(float(np.tanh(z[i, j])), 2),
                "n": int(n[i]),
                "experience": float(base["experience"][i]),
            })  # fmt: skip
    frame: pd.DataFrame = pd.DataFrame(rows)
    return frame


def main() -> None:
    """Write ``alliance_example.csv`` and ``alliance_dependent.csv`` next to this script."""
    for name, frame in (("alliance_example.csv", make()),
                        ("alliance_dependent.csv", make_dependent())):  # fmt: skip
        out = Path(__file__).with_name(name)
        frame.to_csv(out, index=False)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
