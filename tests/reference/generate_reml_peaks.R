#!/usr/bin/env Rscript
## Generates tests/reference/reml_peaks.json: ML/REML fits whose score has more
## than one root, where the answer depends on the root metafor's Fisher scoring
## reaches from its start and on its ll0check.  Found by a validation run on
## unseen data (PROVENANCE.md):
##   * anand1999_step4: dat.anand1999 (OR), the first 4 studies by year (cumul step
##     4): the score is negative at 0 and at the HE start but positive in between;
##     REML reaches the interior peak tau2 = 1.55;
##   * lau1992_subset: 9 studies of dat.lau1992: REML reaches a root whose
##     likelihood is below that at 0, so metafor warns and sets tau2 = 0.
##
## Run from the repository root:
##     Rscript tests/reference/generate_reml_peaks.R

source("tests/reference/reference_common.R")

cases <- list(
  anand1999_step4 = list(
    yi = c(3.0197992996366283, -2.1826257779150664, 0.24073931320458897, -0.15355025951501444),
    vi = c(2.2114823015949421, 1.1456734867860188, 0.16803816338700059, 0.068579503873621522)),
  lau1992_subset = list(
    yi = c(-0.9734947287207667, -1.8405496333974871, 0.95048209662243432, -0.53454215038330677,
           -0.29363217246173456, -2.75066650325663, -0.87546873735389985, -0.21487345677180536,
           0.37865385065750745),
    vi = c(0.13597512393327968, 0.60285714285714287, 0.5175374497625137, 0.65458333333333329,
           0.0024963987305286961, 2.2285607854615117, 1.6833333333333333, 0.0032990587836778896,
           0.14703243616287096)))
out <- list()
for (name in names(cases)) {
  d <- cases[[name]]
  fits <- list()
  for (m in c("ML", "REML")) {
    warned <- FALSE
    fit <- withCallingHandlers(rma(d$yi, d$vi, method = m, control = CTL),
      warning = function(w) { warned <<- TRUE; invokeRestart("muffleWarning") })
    fits[[m]] <- list(tau2 = fit$tau2, estimate = fit$beta[1], se = fit$se,
                      ll0check_warning = warned)
  }
  out[[name]] <- list(yi = arr(d$yi), vi = arr(d$vi), fits = fits)
}
write_reference(list(source = SOURCE, call = "rma(yi, vi, method, control = CTL)", cases = out),
                "reml_peaks.json")
