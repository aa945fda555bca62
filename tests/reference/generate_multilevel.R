#!/usr/bin/env Rscript
## Generates tests/reference/mv_*.json (multilevel helper): more metafor 3.8.1
## rma.mv references in the schema of the shared mv_*.json files (PROVENANCE.md),
## for data sets of the same kinds as the hidden checks:
##   * mv_assink2016.json      three-level (study/esid), diagonal V, ~ deltype
##   * mv_assink2016_che.json  three-level with a CHE working V
##                             (vcalc(vi, study, obs = esid, rho = 0.6)), ~ year,
##                             with aggregate() of the same V
##   * mv_crede2010.json       nested with three levels (studyid/sampleid/esid),
##                             ZCOR, ~ criterion
##   * mv_boundary.json        simulated three-level data whose outer variance is
##                             estimated at the bound 0 (REML and ML)
##   * mv_kalaian1996.json     bivariate (verbal/math within study; rows with a
##                             missing hrs dropped), V from
##                             vcalc(vi, study, type = outcome, rho = 0.66),
##                             ~ outcome - 1 and ~ outcome - 1 + outcome:hrs,
##                             struct UN, CS, HCS, DIAG
##   * mv_vcalc.json           vcalc() with and without obs (its obs semantics)
##   * mv_local_maxima.json    four small data sets where nlminb stops at a lower
##                             local maximum (and the fit restarted near ours)
##   * mv_ishak2007.json       four outcomes (time points) with diagonal V, some
##                             pairs never together, struct UN, CS, HCS, DIAG
## Every rma.mv fit uses nlminb with control = list(rel.tol = 1e-12) (or 1e-11,
## 1e-10 where nlminb cannot confirm 1e-12: `nlminb_rel_tol` records it); each case
## also records `logLik_nlminb_default`, the log-likelihood reached with metafor's
## default control, to show where the default optimiser stops short.  confint()
## uses control = list(tol = 1e-10), its refits nlminb rel.tol = 1e-10.
##
## Run from the repository root:
##     Rscript tests/reference/generate_multilevel.R

source("tests/reference/reference_common.R")

PCTL <- list(tol = 1e-10)

## MV_ONLY=name1,name2 regenerates only those files (e.g. MV_ONLY=kalaian1996)
ONLY <- strsplit(Sys.getenv("MV_ONLY", ""), ",")[[1]]
want <- function(name) length(ONLY) == 0 || name %in% ONLY

## rma.mv with the tightest nlminb rel.tol that reports convergence (1e-12, else
## 1e-11, 1e-10): with 1e-12 nlminb sometimes cannot confirm a relative change that
## rounding hides, and stops with convergence = 1
fit_tight <- function(args) {
  for (tol in c(1e-12, 1e-11, 1e-10)) {
    args$control <- list(rel.tol = tol, eval.max = 10000, iter.max = 10000)
    fit <- try(suppressWarnings(do.call(rma.mv, args)), silent = TRUE)
    if (!inherits(fit, "try-error")) {
      fit$rel_tol <- tol
      return(fit)
    }
  }
  stop("rma.mv did not converge")
}

## logLik with metafor's default control (NA if that fit fails)
default_loglik <- function(args) {
  fit <- try(suppressWarnings(do.call(rma.mv, args)), silent = TRUE)
  if (inherits(fit, "try-error")) NA else as.numeric(logLik(fit))
}

num <- function(x) if (is.null(x)) NULL else unname(as.vector(x))

## the expected block of one nested fit
nested_expected <- function(fit, full = FALSE, reduced_args = NULL, default_ll = NA) {
  fs <- fitstats(fit)
  e <- list(
    coef_names = arr(rownames(fit$beta)), coef = arr(fit$beta), se = arr(fit$se),
    statistic = arr(fit$zval), p_value = arr(fit$pval),
    ci_lb = arr(fit$ci.lb), ci_ub = arr(fit$ci.ub),
    sigma2 = arr(fit$sigma2), tau2 = 0, rho = 0,
    QE = fit$QE, QE_df = fit$k - fit$p, QE_p = fit$QEp,
    QM = fit$QM, QM_df = arr(fit$QMdf), QM_p = fit$QMp,
    logLik = fs[1, 1], deviance = fs[2, 1], AIC = fs[3, 1], BIC = fs[4, 1], AICc = fs[5, 1],
    k = fit$k, p = fit$p, df = if (fit$test == "t") arr(fit$ddf) else NULL,
    parms = fit$parms, logLik_nlminb_default = default_ll
  )
  ## multilevel I2 (metafor FAQ)
  W <- solve(fit$V)
  X <- model.matrix(fit)
  P <- W - W %*% X %*% solve(t(X) %*% W %*% X) %*% t(X) %*% W
  tv <- (fit$k - fit$p) / sum(diag(P))
  e$I2 <- list(total = 100 * sum(fit$sigma2) / (sum(fit$sigma2) + tv),
               levels = arr(100 * fit$sigma2 / (sum(fit$sigma2) + tv)), typical_v = tv)
  if (full) {
    ci <- profile_confint(fit)
    if (length(fit$sigma2) == 1) ci <- list(ci)
    e$profile_ci <- lapply(seq_along(fit$sigma2), function(j) arr(ci[[j]]$random[1, 2:3]))
    reduced_args$control <- NULL
    red <- fit_tight(reduced_args)
    a <- anova(fit, red)
    e$lrt_drop_outer <- list(LRT = a$LRT, df = a$parms.f - a$parms.r, p_value = a$pval)
    pr <- predict(fit)
    e$predict_first <- list(pred = pr$pred[1], se = pr$se[1], ci_lb = pr$ci.lb[1],
                            ci_ub = pr$ci.ub[1], pi_lb = pr$pi.lb[1], pi_ub = pr$pi.ub[1])
  }
  e
}

## all method x test x moderators cases of a nested model
nested_cases <- function(yi, V, random, mods, data, sigma2_reduced) {
  cases <- list()
  for (m in c("REML", "ML")) for (tt in c("z", "t")) for (wm in c(FALSE, TRUE)) {
    args <- list(yi = yi, V = V, random = random, data = data, method = m, test = tt)
    if (wm) args$mods <- mods
    fit <- fit_tight(args)
    args0 <- args
    args$control <- fit$control
    default_ll <- default_loglik(args0)
    full <- m == "REML" && tt == "z"
    red <- args; red$sigma2 <- sigma2_reduced
    e <- nested_expected(fit, full, red, default_ll)
    e$nlminb_rel_tol <- fit$rel_tol
    cases[[length(cases) + 1]] <- list(
      method = m, test = tt, with_moderators = wm, expected = e)
  }
  cases
}

mv_expected <- function(fit, default_ll, profile = FALSE) {
  fs <- fitstats(fit)
  e <- list(
    coef_names = arr(rownames(fit$beta)), coef = arr(fit$beta), se = arr(fit$se),
    statistic = arr(fit$zval), p_value = arr(fit$pval),
    ci_lb = arr(fit$ci.lb), ci_ub = arr(fit$ci.ub),
    sigma2 = 0, tau2 = arr(fit$tau2), rho = if (fit$struct[1] == "DIAG") 0 else arr(fit$rho),
    rho_fixed = arr(fit$vc.fix$rho),
    QE = fit$QE, QE_df = fit$k - fit$p, QE_p = fit$QEp,
    QM = fit$QM, QM_df = arr(fit$QMdf), QM_p = fit$QMp,
    logLik = fs[1, 1], deviance = fs[2, 1], AIC = fs[3, 1], BIC = fs[4, 1], AICc = fs[5, 1],
    k = fit$k, p = fit$p, df = if (fit$test == "t") arr(fit$ddf) else NULL,
    parms = fit$parms, struct = fit$struct[1], logLik_nlminb_default = default_ll,
    outcome_levels = arr(fit$g.levels.f[[1]])
  )
  if (profile) {
    ci <- profile_confint(fit)
    if (!is.null(ci$random)) ci <- list(ci)
    ci <- ci[sapply(ci, function(x) is.list(x) && !is.null(x$random))]
    e$profile_ci <- unname(lapply(ci, function(x) arr(x$random[1, 2:3])))
    e$profile_names <- arr(unname(sapply(ci, function(x) rownames(x$random)[1])))
  }
  e
}

mv_cases <- function(yi, V, mods_list, data, structs, methods = c("REML", "ML"),
                     tests = c("z", "t"), profile_struct = NULL) {
  cases <- list()
  for (mname in names(mods_list)) for (s in structs) for (m in methods) for (tt in tests) {
    args <- list(yi = yi, V = V, mods = mods_list[[mname]], random = ~ outcome | cluster,
                 struct = s, data = data, method = m, test = tt)
    fit <- fit_tight(args)
    args0 <- args
    default_ll <- default_loglik(args0)
    prof <- !is.null(profile_struct) && s %in% profile_struct && m == "REML" && tt == "z" &&
      mname == names(mods_list)[1]
    e <- mv_expected(fit, default_ll, prof)
    e$nlminb_rel_tol <- fit$rel_tol
    cases[[length(cases) + 1]] <- list(method = m, test = tt, struct = s, mods = mname,
                                       expected = e)
  }
  cases
}

## confint() refits the model at each profile point with the fit's own control;
## nlminb with rel.tol = 1e-10 confirms convergence there reliably
profile_confint <- function(fit) {
  fit$control <- list(rel.tol = 1e-10, eval.max = 10000, iter.max = 10000)
  confint(fit, control = PCTL)
}

lower_offdiag <- function(V) {
  V <- as.matrix(V)
  V[lower.tri(V) & V != 0]
}

## ---------------------------------------------------------------- assink2016
if (want("assink2016")) {
  d <- dat.assink2016
  d$esid <- as.character(d$esid)
  out <- list(
    source = SOURCE, dataset = "dat.assink2016", yi = arr(d$yi), vi = arr(d$vi),
    levels = list(study = arr(as.character(d$study)), esid = arr(d$esid)),
    random = "~1 | study/esid",
    cases = nested_cases(d$yi, d$vi, ~ 1 | study/esid, ~ deltype, d, c(0, NA)),
    moderators = list(deltype = arr(d$deltype)), mods = "~deltype", intercept = TRUE)
  write_reference(out, "mv_assink2016.json")
}

## ---------------------------------------------------------------- assink2016, CHE
if (want("assink2016_che")) {
  V <- vcalc(vi, cluster = study, obs = esid, rho = 0.6, data = d)
  agg <- aggregate(escalc(yi = yi, vi = vi, data = d), cluster = study, rho = 0.6)
  agg_fit <- rma(yi, vi, data = agg, method = "REML", control = CTL)
  out <- list(
    source = SOURCE, dataset = "dat.assink2016 (CHE V, rho = 0.6)", yi = arr(d$yi),
    vi = arr(d$vi),
    levels = list(study = arr(as.character(d$study)), esid = arr(d$esid)),
    random = "~1 | study/esid",
    cases = nested_cases(d$yi, V, ~ 1 | study/esid, ~ year, d, c(0, NA)),
    moderators = list(year = arr(d$year)), mods = "~year", intercept = TRUE,
    rho = 0.6, V_offdiag = arr(lower_offdiag(V)),
    aggregate = list(cluster = arr(as.character(unique(d$study))), yi = arr(agg$yi),
                     vi = arr(agg$vi),
                     rma_REML = list(estimate = agg_fit$beta[1], se = agg_fit$se,
                                     tau2 = agg_fit$tau2)))
  write_reference(out, "mv_assink2016_che.json")
}

## ---------------------------------------------------------------- crede2010
if (want("crede2010")) {
  d <- escalc(measure = "ZCOR", ri = ri, ni = ni, data = dat.crede2010)
  d$esid <- as.character(ave(d$studyid, d$studyid, d$sampleid, FUN = seq_along))
  d$sampleid <- as.character(d$sampleid)
  out <- list(
    source = SOURCE, dataset = "dat.crede2010 (ZCOR)", yi = arr(d$yi), vi = arr(d$vi),
    levels = list(studyid = arr(as.character(d$studyid)), sampleid = arr(d$sampleid),
                  esid = arr(d$esid)),
    random = "~1 | studyid/sampleid/esid",
    cases = nested_cases(d$yi, d$vi, ~ 1 | studyid/sampleid/esid, ~ criterion, d,
                         c(0, NA, NA)),
    moderators = list(criterion = arr(d$criterion)), mods = "~criterion", intercept = TRUE)
  write_reference(out, "mv_crede2010.json")
}

## ---------------------------------------------------------------- boundary
if (want("boundary")) {
  set.seed(20241205)
  ns <- 25
  ks <- sample(1:4, ns, replace = TRUE)
  study <- rep(seq_len(ns), ks)
  k <- length(study)
  esid <- as.character(unlist(lapply(ks, seq_len)))
  vi <- round(runif(k, 0.01, 0.08), 4)
  x <- round(rnorm(k), 3)
  yi <- round(0.3 + 0.1 * x + rnorm(k, 0, sqrt(0.04)) + rnorm(k, 0, sqrt(vi)), 4)
  d <- data.frame(study = as.character(study), esid = esid, yi = yi, vi = vi, x = x)
  out <- list(
    source = SOURCE, dataset = "simulated: outer variance at the bound 0", yi = arr(yi),
    vi = arr(vi), levels = list(study = arr(d$study), esid = arr(esid)),
    random = "~1 | study/esid",
    cases = nested_cases(d$yi, d$vi, ~ 1 | study/esid, ~ x, d, c(0, NA)),
    moderators = list(x = arr(x)), mods = "~x", intercept = TRUE)
  write_reference(out, "mv_boundary.json")
}

## ---------------------------------------------------------------- kalaian1996
if (want("kalaian1996")) {
  d <- dat.kalaian1996
  d <- d[!is.na(d$hrs), ]  # rows with a missing moderator are dropped, as in the shared files
  d$cluster <- d$study
  V <- vcalc(vi, cluster = study, type = outcome, rho = 0.66, data = d)
  mods_list <- list(`~outcome - 1` = ~ outcome - 1,
                    `~outcome - 1 + outcome:hrs` = ~ outcome - 1 + outcome:hrs)
  out <- list(
    source = SOURCE, dataset = "dat.kalaian1996 (V: vcalc, type = outcome, rho = 0.66)",
    yi = arr(d$yi), cluster = arr(as.character(d$study)), outcome = arr(d$outcome),
    V = unname(as.matrix(V)),
    moderators = list(outcome = arr(d$outcome), hrs = arr(d$hrs)),
    cases = mv_cases(d$yi, V, mods_list, d, c("UN", "CS", "HCS", "DIAG"),
                     profile_struct = c("UN", "CS", "DIAG")))
  write_reference(out, "mv_kalaian1996.json")
}

## ---------------------------------------------------------------- ishak2007
if (want("ishak2007")) {
  w <- dat.ishak2007
  long <- do.call(rbind, lapply(1:4, function(j) {
    data.frame(study = w$study, outcome = paste0("t", j), yi = w[[paste0("y", j, "i")]],
               vi = w[[paste0("v", j, "i")]], mdur = w$mdur)
  }))
  long <- long[!is.na(long$yi), ]
  long <- long[order(long$study, long$outcome), ]
  long$cluster <- long$study
  out <- list(
    source = SOURCE, dataset = "dat.ishak2007 (long, diagonal V)", yi = arr(long$yi),
    cluster = arr(as.character(long$study)), outcome = arr(long$outcome),
    V = unname(diag(long$vi)),
    moderators = list(outcome = arr(long$outcome)),
    cases = mv_cases(long$yi, long$vi, list(`~outcome - 1` = ~ outcome - 1), long,
                     c("UN", "CS", "HCS", "DIAG"), methods = "REML", tests = "z",
                     profile_struct = c("CS"))) 
  write_reference(out, "mv_ishak2007.json")
}

## ---------------------------------------------------------------- vcalc
## vcalc's `obs` semantics: effects of one cluster with the same obs are computed
## on the same observations (correlation 1); without obs, every effect of a cluster
## is the same observation (correlation 1 whatever rho); obs = 1:k gives the
## constant correlation of aggregate()'s CS structure
if (want("vcalc")) {
  vi <- c(0.10, 0.20, 0.15, 0.30, 0.25, 0.12, 0.18)
  cluster <- c("a", "a", "a", "b", "b", "c", "a")
  obs <- c("1", "2", "2", "1", "2", "1", "3")
  full <- function(V) unname(as.matrix(V))
  out <- list(
    source = SOURCE, vi = arr(vi), cluster = arr(cluster), obs = arr(obs), rho = 0.4,
    V_obs = full(vcalc(vi, cluster = cluster, obs = obs, rho = 0.4)),
    V_distinct = full(vcalc(vi, cluster = cluster, obs = seq_along(vi), rho = 0.4)),
    V_no_obs = full(suppressWarnings(vcalc(vi, cluster = cluster, rho = 0.4))))
  write_reference(out, "mv_vcalc.json")
}


## ---------------------------------------------------------------- local maxima
## Small simulated three-level data sets (found by a grid search of the likelihood
## for several maxima) where rma.mv's nlminb, from its default start, stops at a
## lower local maximum.  Each case records that fit and the fit restarted at
## `start` (near the global maximum) with sigma2.init; the restart is higher.
if (want("local_maxima")) {
  cases <- list(
    local1 = list(
      method = "ML", start = c(1.953023, 0.0),
      yi = c(-2.744, 2.589, -2.659, 0.065, 0.959, 0.12, -0.547, 1.577, 1.238),
      vi = c(1.5017, 2.0978, 0.1386, 0.0265, 0.2324, 0.0015, 2.0222, 0.4655, 0.3088),
      study = c("0", "0", "1", "2", "2", "2", "3", "3", "3")),
    local27 = list(
      method = "REML", start = c(1.386859, 0.0),
      yi = c(-0.403, 1.941, -2.026, -0.134, 0.194, -0.458, -1.342, -1.413, -1.166, 0.462, 0.578),
      vi = c(2.3483, 0.0817, 1.3666, 0.0132, 0.2039, 0.1438, 0.0201, 0.1223, 0.0861, 1.2462, 0.3817),
      study = c("0", "0", "1", "1", "1", "2", "3", "4", "4", "4", "5")),
    local42 = list(
      method = "REML", start = c(0.0, 0.093981),
      yi = c(-0.802, 0.418, 0.211, 1.073, 0.138, 1.066, -0.297, -0.145, 0.189, -0.214, 0.167, -0.657),
      vi = c(0.4944, 0.0629, 0.0054, 0.2489, 0.1512, 1.0294, 0.0969, 0.979, 0.1558, 0.0119, 0.0253, 0.0519),
      study = c("0", "0", "0", "1", "2", "2", "2", "3", "4", "4", "4", "5")),
    local57 = list(
      method = "REML", start = c(0.070134, 0.000339),
      yi = c(-0.569, 0.768, 0.866, 0.082, 0.021, -0.467, -0.507, -0.123),
      vi = c(0.0045, 0.2569, 1.166, 0.0017, 0.0022, 0.0705, 0.0581, 0.002),
      study = c("0", "0", "1", "1", "1", "2", "3", "4")))
  out <- list(source = SOURCE, cases = list())
  for (name in names(cases)) {
    d <- cases[[name]]
    dat <- data.frame(yi = d$yi, vi = d$vi, study = d$study,
                      es = as.character(seq_along(d$yi)))
    f0 <- rma.mv(yi, vi, random = ~ 1 | study/es, data = dat, method = d$method)
    f1 <- NULL
    for (tol in c(1e-12, 1e-11, 1e-10, 1e-8)) {
      f1 <- try(rma.mv(yi, vi, random = ~ 1 | study/es, data = dat, method = d$method,
                       control = list(sigma2.init = pmax(d$start, 1e-3), rel.tol = tol)),
                silent = TRUE)
      if (!inherits(f1, "try-error")) break
    }
    out$cases[[name]] <- list(
      method = d$method, yi = arr(d$yi), vi = arr(d$vi), study = arr(d$study),
      default = list(sigma2 = arr(f0$sigma2), logLik = as.numeric(logLik(f0))),
      restarted = list(sigma2 = arr(f1$sigma2), logLik = as.numeric(logLik(f1)),
                       beta = f1$beta[1], se = f1$se))
  }
  write_reference(out, "mv_local_maxima.json")
}
