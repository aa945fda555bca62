#!/usr/bin/env Rscript
## Generates ADDITIONAL metafor reference files for alliance_meta.
##
## Run from the repository root:
##     Rscript tests/reference/generate_references.R
##
## It writes only the files listed in PROVENANCE.md under
## "Additional reference files (generate_references.R)". It never touches the
## original files copied from ../shared (pool_bcg_rr.json, pool_molloy2014_*.json,
## pool_normand1999_smd.json, subgroup_bcg_alloc.json,
## subgroup_molloy2014_design.json, metareg_bcg_alloc.json,
## metareg_bcg_ablat_year.json, bias_molloy2014.json).
##
## Environment variables (optional):
##   REF_OUTDIR          output directory (default: tests/reference)
##   REF_HELPERS_ONLY=1  only define the helper functions (used for self-checks
##                       that regenerate the original files into a temp dir)

source("tests/reference/reference_common.R")  # metafor, OUTDIR, SOURCE, CTL, arr
CTL_WIDE <- c(CTL, list(tau2.max = 1e6))   # retry with a wider tau2 range
CI_CTL <- list(tol = 1e-12)

METHODS_ALL <- c("EE", "DL", "HE", "HS", "HSk", "SJ", "ML", "REML", "EB", "PM", "PMM")
FAILURES <- character(0)
RETRIES <- character(0)   # fits that needed the wider tau2.max

note_fail <- function(what, e) {
  msg <- paste0(what, ": ", conditionMessage(e))
  FAILURES <<- c(FAILURES, msg)
  message("FAILED ", msg)
  NULL
}

write_ref <- write_reference

nn <- function(x) if (is.null(x) || length(x) == 0) NA else x    # NULL -> NA -> null
num <- function(x) { x <- nn(x); as.numeric(x) }

## rma() with tight control; retry with a wider tau2.max; error -> NULL
fit_rma <- function(yi, vi, method, test = "z", level = 95, mods = NULL, what = "") {
  args <- list(yi = yi, vi = vi, method = method, test = test, level = level)
  if (!is.null(mods)) args$mods <- mods
  res <- tryCatch(do.call(rma, c(args, list(control = CTL))), error = function(e) e)
  if (inherits(res, "error")) {
    RETRIES <<- c(RETRIES, paste(what, method, test, level))
    res2 <- tryCatch(do.call(rma, c(args, list(control = CTL_WIDE))), error = function(e) e)
    if (inherits(res2, "error")) return(note_fail(paste(what, method, test, level), res2))
    return(res2)
  }
  res
}

## fit capturing warnings: list(fit = <rma or NULL>, error = <msg or NULL>, warnings = <chr>)
fit_capture <- function(expr) {
  w <- character(0)
  f <- tryCatch(withCallingHandlers(expr, warning = function(wn) {
    w <<- c(w, conditionMessage(wn)); invokeRestart("muffleWarning") }),
    error = function(e) e)
  if (inherits(f, "error")) list(fit = NULL, error = conditionMessage(f), warnings = w)
  else list(fit = f, error = NULL, warnings = w)
}
wtxt <- function(w) if (length(w) == 0) NA else paste(gsub("\\s+", " ", w), collapse = " | ")

is_ee <- function(fit) fit$method %in% c("EE", "FE", "CE")

## per-fit "expected" block of the pool_* schema
pool_expected <- function(fit, with_ci = TRUE, with_pi = TRUE) {
  if (is.null(fit)) return(NULL)
  out <- list(
    estimate = num(fit$beta[1]), se = num(fit$se[1]),
    statistic = num(fit$zval[1]), p_value = num(fit$pval[1]),
    ci_lb = num(fit$ci.lb[1]), ci_ub = num(fit$ci.ub[1]),
    tau2 = num(fit$tau2), se_tau2 = if (is_ee(fit)) NA else num(fit$se.tau2),
    Q = num(fit$QE), Q_df = fit$k - fit$p, Q_p = num(fit$QEp),
    I2 = num(fit$I2), H2 = num(fit$H2), k = fit$k)
  if (fit$test %in% c("t", "knha", "adhoc")) out$df <- num(fit$ddf[1])
  if (!is_ee(fit)) {
    if (with_pi) {
      pr <- tryCatch(predict(fit), error = function(e) note_fail("predict", e))
      out$pi_lb <- if (is.null(pr)) NA else num(pr$pi.lb)
      out$pi_ub <- if (is.null(pr)) NA else num(pr$pi.ub)
    }
    if (with_ci) {
      ci <- tryCatch(suppressWarnings(confint(fit, control = CI_CTL)),
                     error = function(e) note_fail("confint", e))
      if (is.null(ci)) {
        out$tau2_ci <- arr(c(NA, NA)); out$I2_ci <- arr(c(NA, NA)); out$H2_ci <- arr(c(NA, NA))
      } else {
        r <- ci$random
        out$tau2_ci <- arr(c(r["tau^2", "ci.lb"], r["tau^2", "ci.ub"]))
        out$I2_ci <- arr(c(r["I^2(%)", "ci.lb"], r["I^2(%)", "ci.ub"]))
        out$H2_ci <- arr(c(r["H^2", "ci.lb"], r["H^2", "ci.ub"]))
      }
    }
  }
  out
}

## all method x test cases of a pool_* file
pool_cases <- function(yi, vi, what, adhoc = TRUE) {
  cases <- list()
  add <- function(m, t, lvl) {
    fit <- fit_rma(yi, vi, m, t, lvl * 100, what = what)
    cases[[length(cases) + 1]] <<- list(method = m, test = t, level = lvl,
                                        expected = pool_expected(fit))
  }
  for (m in METHODS_ALL) {
    tests <- if (m == "EE") c("z", "t") else c("z", "t", "knha")
    for (t in tests) add(m, t, 0.95)
  }
  add("REML", "z", 0.90)
  if (adhoc) for (m in c("REML", "DL")) add(m, "adhoc", 0.95)
  cases
}

make_pool <- function(dataset, measure, raw, yi, vi, file, back_transform = FALSE) {
  yi <- as.numeric(yi); vi <- as.numeric(vi)
  out <- list(source = SOURCE, dataset = dataset, measure = measure,
              raw = raw, yi = arr(yi), vi = arr(vi),
              cases = pool_cases(yi, vi, file))
  if (back_transform) {
    fit <- fit_rma(yi, vi, "REML", what = file)
    if (!is.null(fit)) {
      p <- predict(fit, transf = transf.ztor)
      out$back_transformed_REML <- list(estimate = num(p$pred), ci_lb = num(p$ci.lb),
                                        ci_ub = num(p$ci.ub), pi_lb = num(p$pi.lb),
                                        pi_ub = num(p$pi.ub))
    } else out$back_transformed_REML <- NULL
  }
  write_ref(out, file)
}

## ---------------------------------------------------------------- subgroups
make_subgroup <- function(dataset, yi, vi, group, file) {
  yi <- as.numeric(yi); vi <- as.numeric(vi); group <- as.character(group)
  lev <- sort(unique(group))
  analyses <- list()
  for (m in c("EE", "DL", "REML")) {
    groups <- list(); est <- c(); se <- c()
    for (g in lev) {
      s <- group == g
      fit <- fit_rma(yi[s], vi[s], m, what = paste(file, g))
      groups[[g]] <- pool_expected(fit, with_ci = FALSE)
      est <- c(est, num(fit$beta[1])); se <- c(se, num(fit$se[1]))
    }
    bs <- tryCatch(rma(est, sei = se, method = "EE", control = CTL),
                   error = function(e) note_fail(paste(file, m, "between_separate"), e))
    Xg <- model.matrix(~ factor(group))[, -1, drop = FALSE]
    bc <- fit_rma(yi, vi, m, mods = Xg, what = paste(file, "common"))
    analyses[[length(analyses) + 1]] <- list(
      method = m, groups = groups,
      between_separate_tau2 = if (is.null(bs)) NULL else
        list(Q = num(bs$QE), df = bs$k - 1, p_value = num(bs$QEp)),
      between_common_tau2 = if (is.null(bc)) NULL else
        list(Q = num(bc$QM), df = num(bc$QMdf[1]), p_value = num(bc$QMp),
             tau2 = num(bc$tau2), QE = num(bc$QE), QE_p = num(bc$QEp)))
  }
  write_ref(list(source = SOURCE, dataset = dataset, yi = arr(yi), vi = arr(vi),
                 group = arr(group), analyses = analyses), file)
}

## ---------------------------------------------------------------- metareg
metareg_expected <- function(fit) {
  if (is.null(fit)) return(NULL)
  list(coef_names = arr(rownames(fit$beta)), coef = arr(fit$beta[, 1]),
       se = arr(fit$se), statistic = arr(fit$zval), p_value = arr(fit$pval),
       ci_lb = arr(fit$ci.lb), ci_ub = arr(fit$ci.ub),
       tau2 = num(fit$tau2), tau2_se = if (is_ee(fit)) NA else num(fit$se.tau2),
       QE = num(fit$QE), QE_p = num(fit$QEp),
       QM = num(fit$QM), QM_df = arr(c(num(fit$QMdf[1]), num(fit$QMdf[2]))),
       QM_p = num(fit$QMp), I2 = num(fit$I2), H2 = num(fit$H2), R2 = num(fit$R2))
}

make_metareg <- function(dataset, yi, vi, formula, moddata, file,
                         methods = c("EE", "DL", "ML", "REML"), rows = NULL,
                         extra = list()) {
  yi <- as.numeric(yi); vi <- as.numeric(vi)
  mf <- model.frame(formula, data = moddata)
  X <- model.matrix(formula, data = moddata)[, -1, drop = FALSE]
  cases <- list()
  for (m in methods) {
    tests <- if (m == "EE") "z" else c("z", "knha")
    for (t in tests) {
      fit <- fit_rma(yi, vi, m, t, mods = X, what = file)
      exp <- metareg_expected(fit)
      ## coefficient names in R's formula form (as in the original files)
      if (!is.null(exp)) exp$coef_names <- arr(c("intrcpt", colnames(X)))
      cases[[length(cases) + 1]] <- list(method = m, test = t, expected = exp)
    }
  }
  out <- list(source = SOURCE, dataset = dataset, yi = arr(yi), vi = arr(vi),
              formula = paste(deparse(formula), collapse = ""),
              moderators = lapply(as.list(moddata[, all.vars(formula), drop = FALSE]),
                                  function(v) arr(if (is.factor(v)) as.character(v) else v)))
  if (!is.null(rows)) out$rows <- arr(rows)
  out$cases <- cases
  out <- c(out, extra)
  write_ref(out, file)
}

## ---------------------------------------------------------------- bias
trimfill_block <- function(fit, side = NULL, tau2 = TRUE, what = "", control = NULL) {
  targs <- list(fit)
  if (!is.null(side)) targs$side <- side
  if (!is.null(control)) targs$control <- control  # forwarded to trimfill's rma() refits
  tf <- tryCatch(do.call(trimfill, targs),
                 error = function(e) note_fail(paste("trimfill", what), e))
  if (is.null(tf)) return(NULL)
  out <- list(k0 = tf$k0, side = tf$side, estimate = num(tf$beta[1]), se = num(tf$se[1]))
  if (tau2) out$tau2 <- num(tf$tau2)
  out
}

make_bias <- function(dataset, yi, vi, file) {
  yi <- as.numeric(yi); vi <- as.numeric(vi)
  fe <- fit_rma(yi, vi, "EE", what = file)
  re <- fit_rma(yi, vi, "REML", what = file)
  dl <- fit_rma(yi, vi, "DL", what = file)
  safe <- function(what, expr) tryCatch(expr, error = function(e) note_fail(paste(file, what), e))
  out <- list(source = SOURCE, dataset = dataset, yi = arr(yi), vi = arr(vi))
  out$egger_classical <- safe("egger_classical", {
    r <- regtest(re, model = "lm")
    list(statistic = num(r$zval), p_value = num(r$pval), df = num(r$dfs), intercept = num(r$est))
  })
  out$egger_mixed_REML <- safe("egger_mixed_REML", {
    r <- regtest(re); list(statistic = num(r$zval), p_value = num(r$pval))
  })
  out$begg_rank <- safe("ranktest", {
    r <- ranktest(re); list(tau = num(r$tau), p_value = num(r$pval))
  })
  out$trimfill_EE <- trimfill_block(fe, tau2 = FALSE, what = "EE")
  out$trimfill_REML <- trimfill_block(re, what = "REML")
  out$failsafe_rosenthal <- safe("fsn", fsn(yi, vi)$fsnum)
  out$failsafe_orwin_target_0.1 <- safe("fsn orwin", fsn(yi, vi, type = "Orwin", target = 0.1)$fsnum)
  out$leave1out_REML <- safe("leave1out", {
    l <- leave1out(re)
    list(estimate = arr(l$estimate), se = arr(l$se), tau2 = arr(l$tau2),
         Q = arr(l$Q), I2 = arr(l$I2))
  })
  inf <- safe("influence", influence(re))
  out$influence_REML <- if (is.null(inf)) NULL else {
    d <- inf$inf
    list(rstudent = arr(d$rstudent), dffits = arr(d$dffits), cook_d = arr(d$cook.d),
         cov_r = arr(d$cov.r), tau2_del = arr(d$tau2.del), QE_del = arr(d$QE.del),
         hat = arr(d$hat), weight = arr(d$weight))
  }
  ## --- new fields
  out$failsafe_rosenberg <- safe("fsn rosenberg", fsn(yi, vi, type = "Rosenberg")$fsnum)
  out$influence_REML_is_infl <- if (is.null(inf)) NULL else arr(as.logical(inf$is.infl))
  out$cumulative_REML <- safe("cumul", {
    cu <- cumul(re)
    list(estimate = arr(cu$estimate), se = arr(cu$se), tau2 = arr(cu$tau2),
         ci_lb = arr(cu$ci.lb), ci_ub = arr(cu$ci.ub), Q = arr(cu$Q), I2 = arr(cu$I2))
  })
  out$trimfill_REML_right <- trimfill_block(re, side = "right", what = "REML right")
  ## trimfill() forwards `...` (incl. control) to its internal rma() refits;
  ## without it those refits stop at metafor's default threshold (1e-5)
  out$trimfill_REML_tight <- trimfill_block(re, what = "REML tight", control = CTL)
  out$egger_mixed_DL <- safe("egger_mixed_DL", {
    r <- regtest(dl); list(statistic = num(r$zval), p_value = num(r$pval))
  })
  write_ref(out, file)
}

if (Sys.getenv("REF_HELPERS_ONLY") == "1") {
  message("helpers only")
} else {

## ================================================================= 1. pool
h <- dat.hackshaw1998
make_pool("dat.hackshaw1998 (environmental tobacco smoke and lung cancer, log OR as given)",
          "OR", NULL, h$yi, h$vi, "pool_hackshaw1998_or.json")

mc <- dat.mcdaniel1994
mce <- escalc("ZCOR", ri = ri, ni = ni, data = mc)
make_pool("dat.mcdaniel1994 (employment interview validity, 160 correlations)",
          "ZCOR", list(ri = arr(mc$ri), ni = arr(mc$ni)), mce$yi, mce$vi,
          "pool_mcdaniel1994_zcor.json", back_transform = TRUE)

r85 <- dat.raudenbush1985
make_pool("dat.raudenbush1985 (teacher expectancy and IQ, SMD as given)",
          "SMD", NULL, r85$yi, r85$vi, "pool_raudenbush1985_smd.json")

bd <- dat.bangertdrowns2004
make_pool("dat.bangertdrowns2004 (writing-to-learn interventions, SMD as given)",
          "SMD", NULL, bd$yi, bd$vi, "pool_bangertdrowns2004_smd.json")

ko <- dat.konstantopoulos2011
make_pool("dat.konstantopoulos2011 (modified school calendars, 56 SMDs as given; multilevel structure ignored)",
          "SMD", NULL, ko$yi, ko$vi, "pool_konstantopoulos2011_smd.json")

pz <- dat.pritz1997
pze <- escalc("PLO", xi = xi, ni = ni, data = pz)   # default add = 1/2, to = "only0"
make_pool("dat.pritz1997 (stroke patients functionally independent, logit proportions; escalc add=1/2 to='only0')",
          "PLO", list(xi = arr(pz$xi), ni = arr(pz$ni)), pze$yi, pze$vi,
          "pool_pritz1997_plo.json")

## ================================================================= 2. edge cases
edge <- list(
  k2 = list(yi = c(0.2, 0.8), vi = c(0.04, 0.09)),
  k3 = list(yi = c(-0.1, 0.3, 0.9), vi = c(0.02, 0.05, 0.10)),
  identical_yi = list(yi = rep(0.5, 5), vi = c(0.01, 0.02, 0.05, 0.10, 0.20)),
  tiny_variance = list(yi = c(0.1, 0.4, -0.2, 0.6, 0.3), vi = c(1e-8, 0.03, 0.05, 0.02, 0.08)),
  huge_variances = list(yi = c(1.5, -2.0, 3.0, 0.5, -1.0), vi = c(1e4, 1e4, 2e4, 5e3, 1e4)),
  tau2_zero_boundary = list(yi = c(0.30, 0.32, 0.28, 0.31, 0.29, 0.30),
                            vi = c(0.04, 0.05, 0.03, 0.06, 0.04, 0.05)),
  heterogeneous_k4 = list(yi = c(-1.2, 0.1, 1.4, 2.9), vi = c(0.01, 0.2, 0.05, 0.5))
)
ecases <- list()
for (sc in names(edge)) {
  e <- edge[[sc]]
  for (m in c("DL", "REML", "ML", "PM", "EB", "SJ", "HE")) for (t in c("z", "knha")) {
    fc <- fit_capture(fit_rma(e$yi, e$vi, m, t, what = paste("edge", sc)))
    ecases[[length(ecases) + 1]] <- list(scenario = sc, yi = arr(e$yi), vi = arr(e$vi),
                                         method = m, test = t, level = 0.95,
                                         metafor_warning = wtxt(fc$warnings),
                                         expected = pool_expected(fc$fit))
  }
}
write_ref(list(source = SOURCE, dataset = "synthetic edge cases", measure = "GEN",
               cases = ecases), "pool_edgecases.json")

## ================================================================= 3. subgroups
make_subgroup("dat.bangertdrowns2004 by grade", bd$yi, bd$vi, bd$grade,
              "subgroup_bangertdrowns2004_grade.json")
make_subgroup("dat.hackshaw1998 by design", h$yi, h$vi, h$design,
              "subgroup_hackshaw1998_design.json")
mcs <- mce[!is.na(mce$type), ]
make_subgroup("dat.mcdaniel1994 ZCOR by type (3 studies with missing type dropped)",
              mcs$yi, mcs$vi, mcs$type, "subgroup_mcdaniel1994_type.json")

## ================================================================= 4. metareg
make_metareg("dat.raudenbush1985", r85$yi, r85$vi, ~ weeks, r85,
             "metareg_raudenbush1985_weeks.json")

rows_bd <- which(!is.na(bd$length))
bds <- bd[rows_bd, ]
make_metareg("dat.bangertdrowns2004 (rows with missing length dropped)", bds$yi, bds$vi,
             ~ factor(grade) + length, bds, "metareg_bangertdrowns2004_grade_length.json",
             rows = rows_bd)

bcg <- escalc("RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
## predict block
newm <- c(10, 30, 50)
pred_blocks <- list()
for (t in c("z", "knha")) {
  fit <- fit_rma(bcg$yi, bcg$vi, "REML", t, mods = cbind(ablat = bcg$ablat), what = "bcg predict")
  p <- tryCatch(predict(fit, newmods = newm), error = function(e) note_fail("bcg predict", e))
  pred_blocks[[length(pred_blocks) + 1]] <- if (is.null(p)) list(method = "REML", test = t) else
    list(method = "REML", test = t, newmods = list(ablat = arr(newm)),
         pred = arr(p$pred), se = arr(p$se), ci_lb = arr(p$ci.lb), ci_ub = arr(p$ci.ub),
         pi_lb = arr(p$pi.lb), pi_ub = arr(p$pi.ub))
}
## exact permutation tests on the first 7 trials
prow <- 1:7
pb <- bcg[prow, ]
perm_blocks <- list()
for (spec in list(list(m = "REML", f = ~ ablat), list(m = "DL", f = ~ ablat),
                  list(m = "REML", f = NULL))) {
  fit <- fit_rma(pb$yi, pb$vi, spec$m, what = "bcg permutest",
                 mods = if (is.null(spec$f)) NULL else cbind(ablat = pb$ablat))
  pt <- tryCatch(suppressWarnings(permutest(fit, exact = TRUE, progbar = FALSE)),
                 error = function(e) note_fail("permutest", e))
  perm_blocks[[length(perm_blocks) + 1]] <- list(
    rows = arr(prow), yi = arr(pb$yi), vi = arr(pb$vi),
    formula = if (is.null(spec$f)) "~1" else paste(deparse(spec$f), collapse = ""),
    moderators = list(ablat = arr(pb$ablat)),
    method = spec$m, test = "z",
    n_permutations = if (is.null(pt)) NA else length(pt$QM.perm),
    coef_names = arr(rownames(fit$beta)), coef = arr(fit$beta[, 1]),
    statistic = arr(fit$zval), QM = num(fit$QM),
    QMp = if (is.null(pt)) NA else num(pt$QMp),
    pval = if (is.null(pt)) arr(rep(NA, fit$p)) else arr(pt$pval))
}
make_metareg("dat.bcg (RR)", bcg$yi, bcg$vi, ~ ablat, bcg, "metareg_bcg_ablat.json",
             methods = c("EE", "DL", "ML", "REML", "PM", "HE", "SJ", "EB"),
             extra = list(predict = pred_blocks, permutest_exact = perm_blocks))

## ================================================================= 5. bias
make_bias("dat.hackshaw1998 (log OR as given)", h$yi, h$vi, "bias_hackshaw1998.json")
make_bias("dat.bangertdrowns2004 (SMD as given)", bd$yi, bd$vi, "bias_bangertdrowns2004.json")

## ================================================================= 6. REML stress
set.seed(20240611)
NSTRESS <- 500
K <- 20
stress <- vector("list", NSTRESS)
for (i in seq_len(NSTRESS)) {
  vtype <- c("exp_uniform", "chisq", "mixed", "extreme")[(i - 1) %% 4 + 1]
  vi <- switch(vtype,
    exp_uniform = exp(runif(K, -8, 2)),
    chisq = rchisq(K, df = 1) / 5 + 1e-6,
    mixed = ifelse(runif(K) < 0.5, exp(runif(K, -8, 2)), rchisq(K, df = 2)),
    extreme = { v <- exp(runif(K, -14, 4)); v[sample(K, 2)] <- 1e-10; v })
  tau2_true <- if (runif(1) < 0.3) 0 else exp(runif(1, -6, 2))
  yi <- rnorm(K, 0, sqrt(tau2_true + vi))
  if (vtype == "extreme" && runif(1) < 0.5) yi[1] <- yi[1] + 20   # gross outlier
  tight <- fit_capture(rma(yi, vi, method = "REML", control = CTL))
  dflt <- fit_capture(rma(yi, vi, method = "REML"))
  ok <- !is.null(tight$fit)
  dok <- !is.null(dflt$fit)
  if (!ok) FAILURES <- c(FAILURES, paste("stress", i, tight$error))
  stress[[i]] <- list(id = i, vi_type = vtype, tau2_true = tau2_true,
                      yi = arr(yi), vi = arr(vi),
                      tau2 = if (ok) num(tight$fit$tau2) else NA,
                      estimate = if (ok) num(tight$fit$beta[1]) else NA,
                      se = if (ok) num(tight$fit$se[1]) else NA,
                      tight_warning = wtxt(tight$warnings),
                      default_converged = dok,
                      default_error = if (dok) NA else dflt$error,
                      default_warning = wtxt(dflt$warnings),
                      default_tau2 = if (dok) num(dflt$fit$tau2) else NA)
}
write_ref(list(source = SOURCE,
               dataset = sprintf("%d simulated data sets, k = %d, set.seed(20240611)", NSTRESS, K),
               method = "REML",
               control = CTL,
               datasets = stress), "stress_reml_k20.json")

message("---- retries with tau2.max = 1e6 (", length(RETRIES), ") ----")
for (r in RETRIES) message(r)
message("---- failures (", length(FAILURES), ") ----")
for (f in FAILURES) message(f)
}
