## Reference values for egger_test(predictor=...): metafor's regtest() with every
## predictor and both models, on intercept-only and meta-regression fits.
##
## Run from the repository root:  Rscript tests/reference/generate_regtest.R
## Writes tests/reference/regtest_predictors.json (see PROVENANCE_selection.md).

source("tests/reference/reference_common.R")

num <- function(x) if (is.null(x)) NULL else arr(unname(as.vector(x)))
first <- function(x) if (is.null(x) || length(x) == 0) NULL else unname(as.vector(x))[1]

MODELS <- c("rma", "lm")
PREDICTORS <- c("sei", "vi", "ni", "ninv", "sqrtninv")

one_test <- function(fit, model, predictor) {
  r <- tryCatch(regtest(fit, model = model, predictor = predictor), error = function(e) e)
  if (inherits(r, "error")) return(list(error = conditionMessage(r)))
  if (model == "rma") {
    coef <- r$fit$beta
    se <- r$fit$se
  } else {
    ct <- coef(summary(r$fit))
    coef <- ct[, 1]
    se <- ct[, 2]
  }
  list(
    statistic = first(r$zval), pvalue = first(r$pval),
    df = if (is.null(r$dfs) || is.na(r$dfs)) NULL else first(r$dfs),
    est = first(r$est), ci_lb = first(r$ci.lb), ci_ub = first(r$ci.ub),
    coef = num(coef), se = num(se),
    tau2 = if (model == "rma") first(r$fit$tau2) else NULL
  )
}

run_fit <- function(label, yi, vi, ni, X, method, test) {
  fit <- if (is.null(X)) {
    rma(yi, vi, ni = ni, method = method, test = test, control = CTL)
  } else {
    rma(yi, vi, ni = ni, mods = X, method = method, test = test, control = CTL)
  }
  tests <- list()
  for (m in MODELS) for (p in PREDICTORS) tests[[paste(m, p, sep = "_")]] <- one_test(fit, m, p)
  list(label = label, method = method, test = test, mods = !is.null(X),
       X = if (is.null(X)) NULL else lapply(seq_len(nrow(fit$X)), function(i) arr(fit$X[i, ])),
       coef_names = arr(colnames(fit$X)), level = 0.95, regtest = tests)
}

dataset_entry <- function(dataset, measure, yi, vi, ni, X, modname) {
  fits <- list(
    run_fit("REML_z", yi, vi, ni, NULL, "REML", "z"),
    run_fit("DL_knha", yi, vi, ni, NULL, "DL", "knha"),
    run_fit("EE_z", yi, vi, ni, NULL, "EE", "z"),
    run_fit(paste0("REML_z_mods_", modname), yi, vi, ni, X, "REML", "z")
  )
  message("done ", dataset)
  list(dataset = dataset, measure = measure, yi = arr(yi), vi = arr(vi), ni = arr(ni),
       moderator = modname, fits = fits)
}

out <- list(source = SOURCE, controls = CTL)

## dat.bcg: log risk ratios, ni = total sample size (escalc's ni attribute)
d <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
out$bcg <- dataset_entry("bcg", "RR", c(d$yi), d$vi, attr(d$yi, "ni"), cbind(ablat = d$ablat),
                         "ablat")

## dat.molloy2014: Fisher-z correlations, ni from the data
d <- escalc(measure = "ZCOR", ri = ri, ni = ni, data = dat.molloy2014)
out$molloy2014 <- dataset_entry("molloy2014", "ZCOR", c(d$yi), d$vi, d$ni,
                                cbind(meanage = d$meanage), "meanage")

## dat.bangertdrowns2004: standardised mean differences as given, ni from the data
## (the two studies without 'wic' are dropped so that all fits use the same k = 46)
d <- dat.bangertdrowns2004
d <- d[!is.na(d$wic), ]
out$bangertdrowns2004 <- dataset_entry("bangertdrowns2004", "SMD", d$yi, d$vi, d$ni,
                                       cbind(wic = d$wic), "wic")

## dat.normand1999: standardised mean differences, ni = n1i + n2i
d <- escalc(measure = "SMD", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i,
            n2i = n2i, data = dat.normand1999)
## moderator: the three Orpington arms (a 0/1 dummy)
out$normand1999 <- dataset_entry("normand1999", "SMD", c(d$yi), d$vi, d$n1i + d$n2i,
                                 cbind(orpington = as.numeric(grepl("Orpington", d$source))),
                                 "orpington")

write_reference(out, "regtest_predictors.json")
