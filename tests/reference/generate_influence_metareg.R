#!/usr/bin/env Rscript
## Generates tests/reference/influence_metareg.json: influence() of meta-regressions
## (rma.uni with moderators), metafor 3.8.1, tight control.
##
## Run from the repository root:
##     Rscript tests/reference/generate_influence_metareg.R

source("tests/reference/reference_common.R")

bcg <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
rau <- dat.raudenbush1985
bd <- dat.bangertdrowns2004[!is.na(dat.bangertdrowns2004$grade), ]
syn <- data.frame(yi = c(0.12, 0.35, -0.05, 0.40, 0.22, 0.90, 0.18),
                  vi = c(0.02, 0.05, 0.03, 0.04, 0.02, 0.06, 0.05),
                  g = c("a", "a", "a", "b", "b", "c", "b"))

infl_case <- function(name, yi, vi, mods_df, formula, method, test) {
  fit <- rma(yi, vi, mods = formula, data = mods_df, method = method, test = test, control = CTL)
  inf <- influence(fit)
  d <- inf$inf
  ## inf$dfbs is a "list.rma" whose `[` subsets rows; take its columns with `[[`
  dfbs <- matrix(sapply(seq_len(fit$p), function(j) inf$dfbs[[j]]), nrow = fit$k)  # k x p
  list(name = name, formula = paste(deparse(formula), collapse = ""), method = method,
       test = test, yi = arr(yi), vi = arr(vi),
       X = lapply(seq_len(nrow(fit$X)), function(i) arr(fit$X[i, ])),
       coef_names = arr(rownames(fit$beta)), coef = arr(fit$beta), tau2 = fit$tau2,
       rstudent = arr(d$rstudent), dffits = arr(d$dffits), cook_d = arr(d$cook.d),
       cov_r = arr(d$cov.r), tau2_del = arr(d$tau2.del), QE_del = arr(d$QE.del),
       hat = arr(d$hat), weight = arr(d$weight),
       dfbetas = lapply(seq_len(nrow(dfbs)), function(i) arr(unlist(dfbs[i, ]))),
       is_infl = arr(inf$is.infl))
}

cases <- list(
  infl_case("bcg_ablat_REML_z", bcg$yi, bcg$vi, bcg, ~ ablat, "REML", "z"),
  infl_case("bcg_ablat_REML_knha", bcg$yi, bcg$vi, bcg, ~ ablat, "REML", "knha"),
  infl_case("bcg_ablat_year_DL_z", bcg$yi, bcg$vi, bcg, ~ ablat + year, "DL", "z"),
  infl_case("bcg_alloc_ML_z", bcg$yi, bcg$vi, bcg, ~ factor(alloc), "ML", "z"),
  infl_case("raudenbush1985_weeks_REML_z", rau$yi, rau$vi, rau, ~ weeks, "REML", "z"),
  infl_case("bangertdrowns2004_grade_EE_z", bd$yi, bd$vi, bd, ~ factor(grade), "EE", "z"),
  infl_case("bcg_first9_alloc_REML_z", bcg$yi[1:9], bcg$vi[1:9], bcg[1:9, ], ~ factor(alloc),
            "REML", "z"),
  ## a level with one study: deleting it leaves a coefficient inestimable, so
  ## metafor reports NA for that study (its rows of the diagnostics)
  infl_case("synthetic_singleton_level_REML_z", syn$yi, syn$vi, syn, ~ g, "REML", "z")
)
write_reference(list(source = SOURCE, control = CTL, cases = cases), "influence_metareg.json")
