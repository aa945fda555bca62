#!/usr/bin/env Rscript
## Generates tests/reference/redundant_metareg.json: meta-regressions whose design
## has redundant columns, which metafor drops with the warning "Redundant
## predictors dropped from the model." (metafor 3.8.1, tight control).
##
## Run from the repository root:
##     Rscript tests/reference/generate_redundant_metareg.R

source("tests/reference/reference_common.R")

dat <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
dat$ablat2 <- 2 * dat$ablat + 1          # a linear function of ablat
dat$random <- as.numeric(dat$alloc == "random")   # duplicates a factor(alloc) dummy

case <- function(name, formula, method, moderators) {
  f <- withCallingHandlers(
    rma(yi, vi, mods = formula, data = dat, method = method, control = CTL),
    warning = function(w) { message("warning: ", conditionMessage(w)); invokeRestart("muffleWarning") })
  list(name = name, formula = paste(deparse(formula), collapse = ""), method = method,
       moderators = moderators, coef_names = arr(rownames(f$beta)), coef = arr(f$beta),
       se = arr(f$se), tau2 = f$tau2, QM = f$QM, QE = f$QE,
       dropped = arr(sub("^X", "", names(f$coef.na)[f$coef.na])))
}

cases <- list(
  case("ablat_ablat2_year", ~ ablat + ablat2 + year, "REML", list("ablat", "ablat2", "year")),
  case("ablat2_ablat_year", ~ ablat2 + ablat + year, "REML", list("ablat2", "ablat", "year")),
  case("alloc_random_DL", ~ factor(alloc) + random, "DL", list("alloc", "random"))
)
write_reference(list(source = SOURCE, control = CTL, yi = arr(dat$yi), vi = arr(dat$vi),
                     data = list(ablat = arr(dat$ablat), ablat2 = arr(dat$ablat2),
                                 year = arr(dat$year), alloc = arr(dat$alloc),
                                 random = arr(dat$random)),
                     cases = cases),
                "redundant_metareg.json")
