## Reference values for issue 17, phase 2 (egger_test beyond regtest_predictors.json):
##  - regtest_extra.json: metafor's regtest() with every predictor and both models on
##    more fit types: DL-knha, t and adhoc tests with a meta-regression, ML, PM, EE with
##    moderators, and n-carrying measures (log odds ratios from 2x2 tables, whose ni is
##    escalc's n1i + n2i, the "ni" attribute regtest reads);
##  - egger_robust.json: the predictor added to the fixed effects of rma.mv (and rma.uni)
##    fits of dependent effects, metafor's model-based test and clubSandwich's
##    coef_test(vcov = "CR2") (Satterthwaite df) of every coefficient.
##
## Run from the repository root:  Rscript tests/reference/generate_bias2.R
## See tests/reference/PROVENANCE.md (section "bias2").

source("tests/reference/reference_common.R")
suppressPackageStartupMessages(library(clubSandwich))

num <- function(x) if (is.null(x)) NULL else arr(unname(as.vector(x)))
first <- function(x) if (is.null(x) || length(x) == 0) NULL else unname(as.vector(x))[1]

MODELS <- c("rma", "lm")
PREDICTORS <- c("sei", "vi", "ni", "ninv", "sqrtni", "sqrtninv")

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

entry <- function(dataset, measure, yi, vi, ni, X, modname, cases) {
  fits <- lapply(cases, function(cs) {
    run_fit(cs$label, yi, vi, ni, if (isTRUE(cs$mods)) X else NULL, cs$method, cs$test)
  })
  message("done ", dataset)
  list(dataset = dataset, measure = measure, yi = arr(yi), vi = arr(vi), ni = arr(ni),
       moderator = modname, fits = fits)
}
cs <- function(label, method, test, mods) list(label = label, method = method, test = test,
                                               mods = mods)

out <- list(source = SOURCE, controls = CTL)

## dat.bcg, log odds ratios from the 2x2 tables: ni = tpos + tneg + cpos + cneg
d <- escalc(measure = "OR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
out$bcg_or <- entry("bcg_or", "OR", c(d$yi), d$vi, attr(d$yi, "ni"), cbind(ablat = d$ablat),
                    "ablat", list(
  cs("DL_knha_mods_ablat", "DL", "knha", TRUE),
  cs("ML_z", "ML", "z", FALSE),
  cs("REML_t_mods_ablat", "REML", "t", TRUE),
  cs("EE_z_mods_ablat", "EE", "z", TRUE),
  cs("PM_adhoc", "PM", "adhoc", FALSE),
  cs("HE_knha", "HE", "knha", FALSE)
))

## dat.egger2001 (magnesium trials), log odds ratios: ni = n1i + n2i
d <- escalc(measure = "OR", ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = dat.egger2001)
out$egger2001 <- entry("egger2001", "OR", c(d$yi), d$vi, attr(d$yi, "ni"),
                       cbind(year = d$year), "year", list(
  cs("REML_z", "REML", "z", FALSE),
  cs("DL_knha", "DL", "knha", FALSE),
  cs("ML_knha_mods_year", "ML", "knha", TRUE),
  cs("EE_z", "EE", "z", FALSE),
  cs("SJ_t", "SJ", "t", FALSE)
))

## dat.molloy2014: Fisher-z correlations, ni from the data
d <- escalc(measure = "ZCOR", ri = ri, ni = ni, data = dat.molloy2014)
out$molloy2014 <- entry("molloy2014", "ZCOR", c(d$yi), d$vi, d$ni,
                        cbind(meanage = d$meanage), "meanage", list(
  cs("DL_knha_mods_meanage", "DL", "knha", TRUE),
  cs("ML_z", "ML", "z", FALSE),
  cs("EB_t", "EB", "t", FALSE)
))

write_reference(out, "regtest_extra.json")

## ---------------------------------------------------------------------------
## Dependent effects: the predictor in rma.mv's fixed effects, CR2 tests
## ---------------------------------------------------------------------------

CTL_MV <- list(rel.tol = 1e-12, iter.max = 10000, eval.max = 10000)
## nlminb at rel.tol = 1e-12 sometimes reports non-convergence (convergence = 1) where
## it stands at the maximum; those fits are rerun at rel.tol = 1e-10 and say so
## ("rel_tol" in the case), and the tests compare our log-likelihood with theirs.
REL_TOL <- 1e-12
fit_mv <- function(expr) {
  e <- substitute(expr)
  env <- parent.frame()
  e$control <- CTL_MV
  REL_TOL <<- 1e-12
  f <- tryCatch(eval(e, env), error = function(err) NULL)
  if (is.null(f)) {
    REL_TOL <<- 1e-10
    e$control <- modifyList(CTL_MV, list(rel.tol = 1e-10))
    f <- eval(e, env)
  }
  f
}

robust_case <- function(label, fit, cluster) {
  ct <- coef_test(fit, vcov = "CR2", cluster = cluster, test = "Satterthwaite")
  ci <- conf_int(fit, vcov = "CR2", cluster = cluster, level = 0.95)
  list(label = label, coef_names = arr(rownames(fit$beta)), coef = num(fit$beta),
       rel_tol = if (inherits(fit, "rma.mv")) REL_TOL else NULL,
       loglik = as.numeric(logLik(fit)),
       model = list(se = num(fit$se), statistic = num(fit$zval), pvalue = num(fit$pval),
                    ci_lb = num(fit$ci.lb), ci_ub = num(fit$ci.ub),
                    df = if (is.null(fit$ddf) || all(is.na(fit$ddf))) NULL else num(fit$ddf),
                    sigma2 = num(fit$sigma2), tau2 = num(fit$tau2), rho = num(fit$rho)),
       CR2 = list(se = num(ct$SE), statistic = num(ct$tstat), df = num(ct$df_Satt),
                  pvalue = num(ct$p_Satt), ci_lb = num(ci$CI_L), ci_ub = num(ci$CI_U)))
}

rob <- list(source = paste(SOURCE, "+ clubSandwich", as.character(packageVersion("clubSandwich"))),
            controls = CTL_MV)

## the bundled simulated data (alliance_meta/datasets/alliance_dependent.csv): Fisher z
a <- read.csv("alliance_meta/datasets/alliance_dependent.csv")
a <- escalc(measure = "ZCOR", ri = r, ni = n, data = a)
a$sei <- sqrt(a$vi)
a$ninv <- 1 / a$n
cases <- list()
for (pr in c("sei", "vi", "ninv")) {
  f <- fit_mv(rma.mv(yi, vi, mods = as.formula(paste("~", pr)), random = ~ 1 | study / effect,
              data = a))
  cases[[length(cases) + 1]] <- robust_case(paste0("ml_", pr), f, a$study)
}
f <- fit_mv(rma.mv(yi, vi, mods = ~ rater + sei, random = ~ 1 | study / effect, data = a,
            test = "t"))
cases[[length(cases) + 1]] <- robust_case("ml_rater_sei_t", f, a$study)
f <- rma(yi, vi, mods = ~ sei, data = a, control = CTL)
cases[[length(cases) + 1]] <- robust_case("uni_sei", f, a$study)
rob$alliance_dependent <- list(
  yi = arr(c(a$yi)), vi = arr(a$vi), ni = arr(a$n), study = arr(a$study),
  effect = arr(a$effect), rater = arr(a$rater), cases = cases)
message("done alliance_dependent")

## dat.konstantopoulos2011: schools within districts
k <- dat.konstantopoulos2011
k$sei <- sqrt(k$vi)
cases <- list()
for (pr in c("sei", "vi")) {
  f <- fit_mv(rma.mv(yi, vi, mods = as.formula(paste("~", pr)), random = ~ 1 | district / school,
              data = k))
  cases[[length(cases) + 1]] <- robust_case(paste0("ml_", pr), f, k$district)
}
f <- fit_mv(rma.mv(yi, vi, mods = ~ year + sei, random = ~ 1 | district / school, data = k,
            method = "ML"))
cases[[length(cases) + 1]] <- robust_case("ml_year_sei_ML", f, k$district)
rob$konstantopoulos2011 <- list(
  yi = arr(k$yi), vi = arr(k$vi), district = arr(k$district), school = arr(k$school),
  year = arr(k$year), cases = cases)
message("done konstantopoulos2011")

## dat.assink2016: effects within studies
s <- dat.assink2016
s$sei <- sqrt(s$vi)
cases <- list()
for (pr in c("sei", "vi")) {
  f <- fit_mv(rma.mv(yi, vi, mods = as.formula(paste("~", pr)), random = ~ 1 | study / esid,
              data = s))
  cases[[length(cases) + 1]] <- robust_case(paste0("ml_", pr), f, s$study)
}
rob$assink2016 <- list(yi = arr(s$yi), vi = arr(s$vi), study = arr(s$study),
                       esid = arr(s$esid), cases = cases)
message("done assink2016")

## dat.berkey1998: a multivariate model (two outcomes per trial, known V, UN)
b <- dat.berkey1998
V <- vcalc(vi = 1, cluster = author, rvars = c(v1i, v2i), data = b)
b$sei <- sqrt(b$vi)
f <- fit_mv(rma.mv(yi, V, mods = ~ outcome + sei - 1, random = ~ outcome | trial, struct = "UN",
            data = b))
rob$berkey1998 <- list(yi = arr(b$yi), V = lapply(seq_len(nrow(V)), function(i) arr(V[i, ])),
                       trial = arr(b$trial), outcome = arr(as.character(b$outcome)),
                       cases = list(robust_case("mv_outcome_sei", f, b$trial)))
message("done berkey1998")

write_reference(rob, "egger_robust.json")
