"""Validation sweep: alliance_meta against metafor 3.8.1 / clubSandwich 0.5.8.

Reads ``tests/reference/sweep_*.json`` (written by ``tests/reference/generate_sweep.R``)
and prints, per area, the number of quantities compared, the largest relative error
(absolute where the reference is below ``FLOOR`` in magnitude) and every value that
misses ``TOL``.  Run from the repository root::

    PYTHONPATH=$PWD python benchmarks/sweep_compare.py [area ...]

This is a report, not a test: the cases worth keeping are in ``tests/test_sweep.py``.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

import alliance_meta as am

REF = Path(__file__).resolve().parents[1] / "tests" / "reference"
TOL = 1e-6  # the project's contract
FLOOR = 1e-6  # below this |reference|, compare absolutely

STATS: dict[str, list[float]] = defaultdict(list)
BAD: list[str] = []
ERRORS: list[str] = []
LOGLIK: list[str] = []
SHORT: list[str] = []


def load(name: str) -> Any:
    return json.loads((REF / name).read_text())


def err(got: float, want: float | None) -> float:
    if want is None:
        return 0.0 if (got is None or not math.isfinite(got)) else math.inf
    if got is None or not math.isfinite(got):
        return 0.0 if not math.isfinite(want) else math.inf
    d = abs(got - want)
    return d / abs(want) if abs(want) > FLOOR else d


def cmp(area: str, where: str, got: Any, want: Any, tol: float = TOL) -> None:
    g = np.atleast_1d(np.asarray(got, dtype=float)).ravel()
    w = [want] if not isinstance(want, list) else want
    w = [x for row in w for x in (row if isinstance(row, list) else [row])]
    if len(g) != len(w):
        BAD.append(f"[{area}] {where}: length {len(g)} vs {len(w)}")
        STATS[area].append(math.inf)
        return
    for i, (a, b) in enumerate(zip(g, w, strict=True)):
        e = err(float(a), b)
        STATS[area].append(e)
        if e > tol:
            BAD.append(f"[{area}] {where}[{i}]: got {a!r}, metafor {b!r} (err {e:.2e})")


TRANSF: dict[str, Callable[[Any], Any]] = {
    "exp": np.exp,
    "ztor": np.tanh,
    "ilogit": expit,
    "iarcsin": lambda x: np.sin(np.clip(x, 0, np.pi / 2)) ** 2,
}


def quiet() -> warnings.catch_warnings:  # type: ignore[type-arg]
    c = warnings.catch_warnings()
    c.__enter__()
    warnings.simplefilter("ignore")
    return c


# ------------------------------------------------------------------ pooled fits
def pool() -> None:
    for ds in load("sweep_pool.json")["datasets"]:
        for case in ds["cases"]:
            tag = f"{ds['name']} {case['method']}/{case['test']}/{case['level']}"
            if "error" in case:
                try:
                    am.random_effects(yi=ds["yi"], vi=ds["vi"], method=case["method"],
                                      test=case["test"], level=case["level"])
                    ERRORS.append(f"pool {tag}: metafor errors ({case['error']}), we fit")
                except Exception:
                    pass
                continue
            ex = case["expected"]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = am.random_effects(yi=ds["yi"], vi=ds["vi"], measure="GEN",
                                          method=case["method"], test=case["test"],
                                          level=case["level"])
            except Exception as e:
                ERRORS.append(f"pool {tag}: raises {type(e).__name__}: {e}")
                continue
            got = {
                "estimate": r.estimate, "se": r.se, "statistic": r.statistic,
                "p_value": r.pvalue, "ci_lb": r.ci.low, "ci_ub": r.ci.high, "tau2": r.tau2,
                "Q": r.Q, "Q_p": r.Q_pvalue, "I2": r.I2, "H2": r.H2,
                "pi_lb": r.pi.low, "pi_ub": r.pi.high,
            }
            for k, v in got.items():
                if ex[k] is None and k.startswith("pi_") and case["method"] == "EE":
                    continue  # metafor's predict() gives no PI for an EE model; we give the CI
                cmp("pool", f"{tag} {k}", v, ex[k])
            if ex.get("df") is not None:
                cmp("pool", f"{tag} df", r.df, ex["df"])
            if ex.get("se_tau2") is not None:
                cmp("pool:se_tau2", f"{tag} se_tau2", r.tau2_se, ex["se_tau2"])
            if "tau2_ci" in ex:
                try:
                    h = r.heterogeneity_ci()
                    hi = ex["tau2_ci"][1]
                    # metafor caps the upper search at tau2.max = max(100, 10 tau2) and reports
                    # the cap; we do not cap (docs/validation.rst): compare uncapped bounds only
                    capped = hi is not None and hi >= max(100.0, 10 * ex["tau2"]) * (1 - 1e-12)
                    n = 1 if capped else 2
                    if capped and h.tau2.high < hi:
                        BAD.append(f"[pool:confint] {tag}: capped bound {hi}, ours {h.tau2.high}")
                    cmp("pool:confint", f"{tag} tau2_ci", [h.tau2.low, h.tau2.high][:n],
                        ex["tau2_ci"][:n])
                    cmp("pool:confint", f"{tag} I2_ci", [h.I2.low, h.I2.high][:n], ex["I2_ci"][:n])
                    cmp("pool:confint", f"{tag} H2_ci", [h.H2.low, h.H2.high][:n], ex["H2_ci"][:n])
                except Exception as e:
                    ERRORS.append(f"confint {tag}: raises {type(e).__name__}: {e}")
            if "transf" in ex:
                p = r.predict(transf=TRANSF[ds["transf"]])
                t = ex["transf"]
                if case["method"] == "EE":
                    t = {**t, "pi_lb": p.pi.low[0], "pi_ub": p.pi.high[0]}
                cmp("pool:predict-transf", f"{tag} transf",
                    [p.pred[0], p.ci.low[0], p.ci.high[0], p.pi.low[0], p.pi.high[0]],
                    [t["pred"], t["ci_lb"], t["ci_ub"], t["pi_lb"], t["pi_ub"]])


# ------------------------------------------------------------------ escalc
def _escalc(area: str, tag: str, measure: str, inputs: dict[str, Any], opts: dict[str, Any],
            want_yi: Any, want_vi: Any, error: str | None = None) -> None:
    kw = {k: np.asarray(v, dtype=float) for k, v in inputs.items()}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = am.escalc(measure, nan_policy="omit", **opts, **kw)
    except Exception as e:
        if error is None:
            ERRORS.append(f"escalc {tag}: raises {type(e).__name__}: {e}")
        return
    if error is not None:
        ERRORS.append(f"escalc {tag}: metafor refuses ({error}); we accept silently")
        return
    yi = np.full(len(want_yi), np.nan)
    vi = np.full(len(want_yi), np.nan)
    rows = np.asarray(r.rows) if r.rows is not None else np.arange(len(r.yi))
    yi[rows] = r.yi
    vi[rows] = r.vi
    cmp(area, f"{tag} yi", yi, want_yi)
    cmp(area, f"{tag} vi", vi, want_vi)


def escalc() -> None:
    for c in load("sweep_escalc.json")["cases"]:
        opts = dict(c["options"]) if c["options"] else {}
        tag = f"{c['label']} {c['measure']} {opts}"
        _escalc("escalc", tag, c["measure"], c["inputs"], opts, c.get("yi"), c.get("vi"),
                c.get("error"))
    for ds in load("sweep_pool.json")["datasets"]:
        raw = ds["raw"]
        if not raw:
            continue
        kw = {k: np.asarray(v, dtype=float) for k, v in raw.items() if k != "measure"}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = am.escalc(raw["measure"], nan_policy="propagate", **kw)
        except Exception as e:
            ERRORS.append(f"escalc {ds['name']}: raises {type(e).__name__}: {e}")
            continue
        ok = np.isfinite(r.yi) & np.isfinite(r.vi)  # R dropped the rows with NA yi or vi
        cmp("escalc:pool-raw", f"{ds['name']} yi", r.yi[ok], ds["yi"])
        cmp("escalc:pool-raw", f"{ds['name']} vi", r.vi[ok], ds["vi"])


# ------------------------------------------------------------------ meta-regression
def metareg() -> None:
    ref = load("sweep_metareg.json")
    frames = {k: pd.DataFrame(v) for k, v in ref["data"].items()}
    for c in ref["cases"]:
        tag = f"{c['label']} {c['formula']} {c['method']}/{c['test']}"
        df = frames[c["label"]]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = am.meta_regression(moderators=c["formula"], yi="yi", vi="vi", data=df,
                                       method=c["method"], test=c["test"], nan_policy="omit")
        except Exception as e:
            if "error" not in c:
                ERRORS.append(f"metareg {tag}: raises {type(e).__name__}: {e}")
            continue
        if "error" in c:
            ERRORS.append(f"metareg {tag}: metafor errors ({c['error']}), we fit")
            continue
        ex = c["expected"]
        if list(r.coef_names) != list(ex["coef_names"]):
            BAD.append(f"[metareg:names] {tag}: {list(r.coef_names)} vs {ex['coef_names']}")
        for k, v in {"coef": r.coef, "se": r.se, "statistic": r.statistic, "p_value": r.pvalue,
                     "ci_lb": r.ci.low, "ci_ub": r.ci.high, "tau2": r.tau2, "QE": r.QE,
                     "QE_p": r.QE_pvalue, "QM": r.QM, "QM_p": r.QM_pvalue,
                     "QM_df": np.atleast_1d(r.QM_df)[0],
                     "I2": r.I2, "H2": r.H2, "vcov": r.vcov}.items():
            cmp("metareg", f"{tag} {k}", v, ex[k])
        if ex["R2"] is not None or r.R2 is not None:
            cmp("metareg:R2", f"{tag} R2", r.R2 if r.R2 is not None else math.nan, ex["R2"])
        if ex.get("df") is not None:
            cmp("metareg", f"{tag} df", r.df, ex["df"])
        if ex.get("tau2_se") is not None:
            cmp("metareg:se_tau2", f"{tag} tau2_se", r.tau2_se, ex["tau2_se"])
        if "predict" in ex:
            pr = ex["predict"]
            p = r.predict(np.asarray(pr["newmods"], dtype=float))
            cmp("metareg:predict", f"{tag} predict",
                [*p.pred, *p.se, *p.ci.low, *p.ci.high, *p.pi.low, *p.pi.high],
                [*pr["pred"], *pr["se"], *pr["ci_lb"], *pr["ci_ub"], *pr["pi_lb"], *pr["pi_ub"]])


# ------------------------------------------------------------------ diagnostics
def _try(tag: str, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return f(*args, **kwargs)
    except Exception as e:
        ERRORS.append(f"{tag}: raises {type(e).__name__}: {e}")
        return None


def diagnostics() -> None:
    from alliance_meta.plot.baujat import baujat_layout

    for c in load("sweep_diagnostics.json")["cases"]:
        tag = f"{c['name']} {c['method']}"
        fit = am.random_effects(yi=c["yi"], vi=c["vi"], method=c["method"])
        ex = c["leave1out"]
        r = _try(f"leave1out {tag}", am.leave_one_out, fit)
        if r is not None:
            for k, v in {"estimate": r.estimate, "se": r.se, "statistic": r.statistic,
                         "p_value": r.pvalue, "ci_lb": r.ci.low, "ci_ub": r.ci.high, "Q": r.Q,
                         "Q_p": r.Q_pvalue, "tau2": r.tau2, "I2": r.I2, "H2": r.H2}.items():
                if ex.get(k) is not None:
                    cmp("leave1out", f"{tag} {k}", v, ex[k])
        ex = c["influence"]
        r = _try(f"influence {tag}", am.influence, fit)
        if r is not None:
            for k, v in {"rstudent": r.rstudent, "dffits": r.dffits, "cook_d": r.cook_d,
                         "cov_r": r.cov_r, "tau2_del": r.tau2_del, "QE_del": r.QE_del,
                         "hat": r.hat, "weight": r.weight,
                         "dfbetas": np.asarray(r.dfbetas).ravel()}.items():
                if ex.get(k) is not None:
                    cmp("influence", f"{tag} {k}", v, ex[k])
            got_inf = np.asarray(r.influential, dtype=bool).tolist()
            if got_inf != ex["is_infl"]:
                BAD.append(f"[influence] {tag} is_infl: {got_inf} vs {ex['is_infl']}")
        ex = c["cumul"]
        r = _try(f"cumul {tag}", am.cumulative, fit)
        if r is not None:
            for k, v in {"estimate": r.estimate, "se": r.se, "ci_lb": r.ci.low,
                         "ci_ub": r.ci.high, "Q": r.Q, "tau2": r.tau2, "I2": r.I2, "H2": r.H2,
                         "p_value": r.pvalue}.items():
                if ex.get(k) is not None:
                    cmp("cumul", f"{tag} {k}", v, ex[k])
        for key, est in (("trimfill", "L0"), ("trimfill_R0", "R0")):
            ex = c[key]
            r = _try(f"{key} {tag}", am.trim_and_fill, fit, estimator=est)
            if r is None:
                continue
            if r.k0 != ex["k0"] or r.side != ex["side"]:
                BAD.append(f"[trimfill] {tag} {est}: k0 {r.k0} side {r.side} vs {ex['k0']} "
                           f"{ex['side']}")
                continue
            got = {"se_k0": r.k0_se, "estimate": r.result.estimate, "se": r.result.se,
                   "tau2": r.result.tau2}
            if "ci_lb" in ex:
                got.update(ci_lb=r.result.ci.low, ci_ub=r.result.ci.high)
            for k, v in got.items():
                if ex.get(k) is not None:
                    cmp("trimfill", f"{tag} {est} {k}", v, ex[k])
        r = _try(f"ranktest {tag}", am.rank_correlation_test, fit)
        if r is not None and not r.exact and len(c["yi"]) >= 50:
            # documented deviation (docs/validation.rst, issue 18): exact p-values for
            # k >= 50 only on request; metafor's default is exact=TRUE
            cmp("ranktest:default-approx", f"{tag}", [r.tau, r.pvalue],
                [c["ranktest"]["tau"], c["ranktest"]["p_value"]], tol=math.inf)
            r = am.rank_correlation_test(fit, exact=True)
        if r is not None:
            cmp("ranktest", f"{tag}", [r.tau, r.pvalue],
                [c["ranktest"]["tau"], c["ranktest"]["p_value"]])
        for key, model in (("regtest", "rma"), ("regtest_lm", "lm")):
            ex = c[key]
            r = _try(f"{key} {tag}", am.egger_test, fit, model=model)
            if r is not None:
                cmp("regtest", f"{tag} {model}", [r.statistic, r.pvalue],
                    [ex["statistic"], ex["p_value"]])
                if ex.get("df") is not None:
                    cmp("regtest", f"{tag} {model} df", r.df, ex["df"])
                if "est" in ex:
                    cmp("regtest:limit", f"{tag} {model} est", r.intercept, ex["est"])
        ex = c["fsn"]
        for meth, key, target in (("rosenthal", "rosenthal", None), ("orwin", "orwin", None),
                                  ("orwin", "orwin_05", 0.05), ("rosenberg", "rosenberg", None)):
            r = _try(f"fsn {tag} {key}",
                     am.fail_safe_n, fit, meth, target)
            if r is not None:
                cmp("fsn", f"{tag} {key}", r.n, ex[key])
                if key == "orwin":
                    cmp("fsn", f"{tag} orwin target", r.target, ex["orwin_target"])
                if key in ("rosenthal", "rosenberg"):
                    cmp("fsn", f"{tag} {key} p", r.pvalue, ex[f"{key}_p"])
        r = _try(f"baujat {tag}", baujat_layout, fit)
        if r is not None:
            cmp("baujat", f"{tag} x", r.x, c["baujat"]["x"])
            cmp("baujat", f"{tag} y", r.y, c["baujat"]["y"])


# ------------------------------------------------------------------ subgroups
def subgroup() -> None:
    for c in load("sweep_subgroup.json")["cases"]:
        tag = f"{c['label']} by {c['by']} {c['method']}"
        sep = _try(f"subgroup {tag}", lambda c=c: am.subgroup_analysis(
            yi=c["yi"], vi=c["vi"], groups=c["groups_of"], method=c["method"]))
        if sep is not None:
            for name, g in c["groups"].items():
                r = sep.groups[name]
                cmp("subgroup", f"{tag} {name}",
                    [r.k, r.estimate, r.se, r.tau2, r.Q, r.ci.low, r.ci.high],
                    [g["k"], g["estimate"], g["se"], g["tau2"], g["Q"], g["ci_lb"], g["ci_ub"]])
            cmp("subgroup", f"{tag} Q_between", [sep.Q_between, sep.Q_between_pvalue],
                [c["Q_between"], c["Q_between_p"]])
        com = _try(f"subgroup common {tag}", lambda c=c: am.subgroup_analysis(
            yi=c["yi"], vi=c["vi"], groups=c["groups_of"], method=c["method"], tau2="common"))
        if com is not None:
            e = c["common"]
            cmp("subgroup:common", f"{tag}",
                [com.Q_between, com.Q_between_pvalue, com.tau2, com.QE, com.QE_pvalue],
                [e["QM"], e["QM_p"], e["tau2"], e["QE"], e["QE_p"]])


# ------------------------------------------------------------------ rma.mv + robust
def _robust(tag: str, fit: Any, cluster: Any, rob: dict[str, Any], p: int) -> None:
    r = _try(f"robust {tag}", am.robust, fit, cluster)
    if r is None:
        return
    cmp("robust:CR2", f"{tag} se", r.se, rob["se"])
    cmp("robust:CR2", f"{tag} t", r.statistic, rob["statistic"])
    cmp("robust:CR2", f"{tag} df", r.df, rob["df"])
    cmp("robust:CR2", f"{tag} p", r.pvalue, rob["p_value"])
    if "wald" in rob:
        w = r.wald_test(list(range(1, p)))
        e = rob["wald"]
        cmp("robust:HTZ", f"{tag} wald", [w.F, w.df_num, w.df_denom, w.pvalue],
            [e["F"], e["df_num"], e["df_denom"], e["p_value"]])


def mv() -> None:
    for c in load("sweep_mv.json")["cases"]:
        tag = f"{c['label']} {c.get('struct', '')} {c['formula']} {c['method']}/{c['test']}"
        ex = c["expected"]
        if c["kind"] == "uni":
            fit = am.meta_regression(yi=c["yi"], vi=c["vi"], moderators={
                "cog": np.asarray(c["cog"], float), "ba": np.asarray(c["ba"], float)},
                method=c["method"])
            cmp("mv:uni", f"{tag} coef", [*fit.coef, fit.tau2], [*ex["coef"], ex["tau2"]])
            _robust(tag, fit, c["study"], c["robust"], len(fit.coef))
            continue
        if c["kind"] == "multilevel":
            if "article" in c:
                levels = {k: np.asarray(c[k]).astype(str) for k in
                          ("article", "experiment", "sample", "id")}
                levels = {"article": levels["article"],
                          "experiment": np.char.add(levels["article"], levels["experiment"]),
                          "sample": levels["sample"], "id": levels["id"]}
                cluster = c["article"]
            else:
                levels = {"study": np.asarray(c["study"]), "es": np.asarray(c["es"])}
                cluster = c["study"]
            mods = None if c["formula"] == "~ 1" else {"bmi": np.asarray(c["bmi"], float)}
            fit = _try(f"mv {tag}", am.multilevel,
                       yi=c["yi"], vi=c["vi"], levels=levels, moderators=mods,
                       method=c["method"], test=c["test"])
        else:
            cluster = c["study"]
            fit = _try(f"mv {tag}", am.multivariate,
                       yi=c["yi"], V=np.asarray(c["V"]), cluster=c["study"],
                       outcome=np.asarray(c["outcome"]).astype(str), struct=c["struct"],
                       moderators={"outcome": np.asarray(c["outcome"]).astype(str)},
                       intercept=False, method=c["method"])
        if fit is None:
            continue
        cmp("mv:loglik", f"{tag} logLik", fit.loglik, ex["logLik"])
        LOGLIK.append(f"{tag}: ours {fit.loglik:.10f}  metafor {ex['logLik']:.10f}  "
                      f"diff {fit.loglik - ex['logLik']:+.2e}  ({ex['mv_control']})  "
                      f"ours sigma2={np.round(fit.sigma2, 6).tolist()} "
                      f"tau2={np.round(fit.tau2, 6).tolist()} rho={np.round(fit.rho, 6).tolist()}"
                      f" | metafor sigma2={ex['sigma2']} tau2={ex['tau2']} rho={ex['rho']}")
        if fit.loglik - ex["logLik"] > 1e-10:
            # we are higher: metafor stopped short or sits at a lower local maximum
            # (checked: metafor's own logLik at our estimates equals ours, /tmp/check_fine.R
            # in the sweep report); parameters are not comparable
            SHORT.append(f"{tag}: ours {fit.loglik:.10f} > metafor {ex['logLik']:.10f}")
            continue
        for k, v in {"coef": fit.coef, "se": fit.se, "statistic": fit.statistic,
                     "p_value": fit.pvalue, "ci_lb": fit.ci.low, "ci_ub": fit.ci.high,
                     "QE": fit.QE, "QE_p": fit.QE_pvalue}.items():
            cmp("mv", f"{tag} {k}", v, ex[k])
        if ex.get("QM") is not None and len(ex["coef"]) > 1:
            cmp("mv", f"{tag} QM", [fit.QM, fit.QM_pvalue], [ex["QM"], ex["QM_p"]])
        if c["kind"] == "multilevel":
            cmp("mv:varcomp", f"{tag} sigma2", fit.sigma2, ex["sigma2"])
        else:  # metafor's sigma2 (and rho for DIAG) are placeholders here
            cmp("mv:varcomp", f"{tag} tau2", fit.tau2, ex["tau2"])
            if c["struct"] != "DIAG":
                cmp("mv:varcomp", f"{tag} rho", fit.rho, ex["rho"])
        if c.get("robust"):
            _robust(tag, fit, cluster, c["robust"], len(ex["coef"]))


def main(argv: list[str]) -> None:
    areas = {"pool": pool, "escalc": escalc, "metareg": metareg, "diagnostics": diagnostics,
             "subgroup": subgroup, "mv": mv}
    for name in argv or list(areas):
        try:
            areas[name]()
        except Exception:
            ERRORS.append(f"{name}: crashed\n{traceback.format_exc()}")
    print(f"{'area':28s} {'n':>7s} {'max err':>10s}")
    for a, v in sorted(STATS.items()):
        print(f"{a:28s} {len(v):7d} {max(v):10.2e}")
    print(f"\n{len(BAD)} values beyond {TOL}:")
    for b in BAD[:300]:
        print(" ", b)
    if LOGLIK:
        print("\nlog-likelihoods (rma.mv):")
        for x in LOGLIK:
            print(" ", x)
    if SHORT:
        print("\nmetafor below our maximum (not compared):")
        for x in SHORT:
            print(" ", x)
    print(f"\n{len(ERRORS)} errors:")
    for e in ERRORS[:100]:
        print(" ", e)


if __name__ == "__main__":
    _ = pd  # pandas is used by later areas
    main(sys.argv[1:])
