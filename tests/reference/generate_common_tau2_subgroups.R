#!/usr/bin/env Rscript
## Generates tests/reference/common_tau2_subgroups.json: the subgroup estimates under a
## common tau^2, i.e. the coefficients of rma(yi, vi, mods = ~ factor(g) - 1), for
## the data of the subgroup_*.json references (read from those files), with the EE,
## DL and REML estimators and the z and knha tests.
##
## Run from the repository root:
##     Rscript tests/reference/generate_common_tau2_subgroups.R

source("tests/reference/reference_common.R")

files <- c("subgroup_bcg_alloc.json", "subgroup_molloy2014_design.json",
           "subgroup_hackshaw1998_design.json", "subgroup_bangertdrowns2004_grade.json")
cases <- list()
for (f in files) {
  d <- fromJSON(file.path(OUTDIR, f))
  g <- factor(as.character(d$group))  # levels sorted, as alliance_meta's
  for (m in c("EE", "DL", "REML")) {
    for (tst in c("z", "knha")) {
      if (m == "EE" && tst == "knha") next
      fit <- rma(d$yi, d$vi, mods = ~ g - 1, method = m, test = tst, control = CTL)
      cases[[length(cases) + 1]] <- list(
        file = f, method = m, test = tst, levels = arr(levels(g)),
        estimate = arr(fit$beta[, 1]), se = arr(fit$se),
        ci_lb = arr(fit$ci.lb), ci_ub = arr(fit$ci.ub), tau2 = fit$tau2)
    }
  }
}
write_reference(list(source = SOURCE, call = "rma(yi, vi, mods = ~ factor(g) - 1, method, test)",
                     cases = cases), "common_tau2_subgroups.json")
