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

Run ``python -m alliance_meta.datasets._make_alliance_example`` to regenerate the
file; the output is deterministic.
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


def main() -> None:
    """Write ``alliance_example.csv`` next to this script."""
    out = Path(__file__).with_name("alliance_example.csv")
    make().to_csv(out, index=False)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
