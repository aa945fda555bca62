#!/usr/bin/env Rscript
## Generates the cluster-robust references of alliance_meta.robust():
##   robust_<data>.json    rma.uni fits (REML, DL, EE), clustered by study/author
##   robustmv_<data>.json  rma.mv fits (CHE three-/four-level models with a vcalc V,
##                         and a multivariate model), clustered by study
## each with clubSandwich 0.5.8's CR2 coef_test / conf_int / Wald_test(HTZ), its CR0
## (coef_test, Wald_test HTZ) and metafor 3.8.1's own robust().  Fields are described
## in PROVENANCE.md (section "robust").
##
## Run from the repository root:
##     Rscript tests/reference/generate_robust.R

source("tests/reference/reference_common.R")
suppressPackageStartupMessages(library(clubSandwich))
SOURCE <- paste(SOURCE, "clubSandwich", as.character(packageVersion("clubSandwich")))
MVCTL <- list(rel.tol = 1e-12, eval.max = 10000, iter.max = 10000)

## rma.mv with nlminb at rel.tol = 1e-12; where nlminb reports non-convergence at
## that tolerance (it can stop with "false convergence" at the optimum), fall back to
## rel.tol = 1e-10.  The control used is recorded with each case.  (The references
## give the variance components they were computed with, so the robust values are
## exact for those components whichever control found them.)
fit_mv <- function(...) {
  args <- list(...)  # evaluated here: rma.mv's own lookup of yi/V in `data` is not used
  for (ctl in list(MVCTL, modifyList(MVCTL, list(rel.tol = 1e-10)))) {
    fit <- try(do.call(rma.mv, c(args, list(control = ctl))), silent = TRUE)
    if (!inherits(fit, "try-error")) {
      attr(fit, "control") <- sprintf("nlminb rel.tol = %g", ctl$rel.tol)
      return(fit)
    }
  }
  stop("rma.mv did not converge")
}

rows <- function(X) unname(lapply(seq_len(nrow(X)), function(i) arr(X[i, ])))

## clubSandwich CR2 (or CR0) with the model's own weights, and metafor's robust()
robust_block <- function(fit, cluster, type = "CR2", metafor_robust = TRUE) {
  ct <- coef_test(fit, vcov = type, cluster = cluster, test = "Satterthwaite")
  ci <- conf_int(fit, vcov = type, cluster = cluster, level = 0.95)
  out <- list(coef = arr(ct$beta), se = arr(ct$SE), statistic = arr(ct$tstat),
              df = arr(ct$df_Satt), p_value = arr(ct$p_Satt),
              ci_lb = arr(ci$CI_L), ci_ub = arr(ci$CI_U))
  p <- length(ct$beta)
  int <- colnames(model.matrix(fit))[1] == "intrcpt"
  coefs <- if (int) seq.int(2, length.out = p - 1) else seq_len(p)
  if (length(coefs) > 0 && !(int && p == 1)) {
    w <- Wald_test(fit, constraints = constrain_zero(coefs), vcov = type,
                   cluster = cluster, test = "HTZ")
    out$wald <- list(coefs = arr(coefs), F = w$Fstat, df_num = w$df_num,
                     df_denom = w$df_denom, p_value = w$p_val)
  }
  if (metafor_robust) {
    r <- robust(fit, cluster = cluster)
    out$metafor_robust <- list(se = arr(r$se), statistic = arr(r$zval), df = r$dfs,
                               p_value = arr(r$pval), ci_lb = arr(r$ci.lb),
                               ci_ub = arr(r$ci.ub), QM = r$QM, QM_df = arr(r$QMdf))
  }
  out
}

## ---------------------------------------------------------------------------
## rma.uni
## ---------------------------------------------------------------------------
uni_reference <- function(name, dataset, yi, vi, cluster, moderators, mods) {
  cases <- list()
  for (m in c("REML", "DL", "EE")) {
    if (is.null(mods)) {
      fit <- rma(yi, vi, method = m, control = CTL)
    } else {
      fit <- rma(yi, vi, mods = mods, data = moderators, method = m, control = CTL)
    }
    rb <- robust_block(fit, cluster)
    rb$CR0 <- robust_block(fit, cluster, "CR0", metafor_robust = FALSE)
    cases[[length(cases) + 1]] <- list(
      method = m,
      expected = list(coef_names = arr(rownames(fit$beta)), coef = arr(fit$beta[, 1]),
                      tau2 = fit$tau2, robust = rb))
  }
  out <- list(source = SOURCE, dataset = dataset, yi = arr(yi), vi = arr(vi),
              cluster = arr(as.character(cluster)), cases = cases)
  if (!is.null(mods)) {
    out$moderators <- as.list(moderators)
    out$mods <- paste(deparse(mods), collapse = "")
  }
  write_reference(out, paste0("robust_", name, ".json"))
}

d <- dat.assink2016
uni_reference("assink2016", "dat.assink2016", d$yi, d$vi, d$study,
              data.frame(year = d$year, deltype = d$deltype), ~ year + deltype)

d <- dat.tannersmith2016
uni_reference("tannersmith2016", "dat.tannersmith2016", d$yi, d$vi, d$studyid,
              data.frame(propmale = d$propmale), ~ propmale)

d <- dat.knapp2017
uni_reference("knapp2017", "dat.knapp2017", d$yi, d$vi, d$study, NULL, NULL)

d <- escalc("ZCOR", ri = ri, ni = ni, data = dat.crede2010)
uni_reference("crede2010", "dat.crede2010 (ZCOR)", c(d$yi), c(d$vi), d$studyid,
              data.frame(source = d$source), ~ source)

d <- dat.lopez2019
uni_reference("lopez2019", "dat.lopez2019 (diff, se^2)", d$diff, d$se^2, d$study,
              data.frame(group = d$group, tailored = d$tailored), ~ group + tailored)

## ---------------------------------------------------------------------------
## rma.mv: CHE models, V = vcalc(vi, cluster, obs, rho)
## ---------------------------------------------------------------------------
offdiag <- function(V) {
  ## non-zero lower-triangle entries, column-major, with 1-based (row, col)
  idx <- which(lower.tri(V) & V != 0, arr.ind = TRUE)
  idx <- idx[order(idx[, "col"], idx[, "row"]), , drop = FALSE]
  list(values = arr(V[idx]), row = arr(idx[, "row"]), col = arr(idx[, "col"]))
}

che_reference <- function(name, dataset, dat, outer, inner_levels, rho, moderators, mods) {
  ## dat has yi, vi, the level columns (outer first) and the moderators
  V <- vcalc(vi, cluster = dat[[outer]], obs = dat[[inner_levels[length(inner_levels)]]],
             rho = rho, data = dat)
  rnd <- as.formula(paste("~ 1 |", paste(inner_levels, collapse = "/")))
  od <- offdiag(V)
  cases <- list()
  for (m in c("REML", "ML")) for (wm in c(FALSE, TRUE)) {
    if (wm) {
      fit <- fit_mv(yi = dat$yi, V = V, random = rnd, mods = mods, data = dat, method = m)
    } else {
      fit <- fit_mv(yi = dat$yi, V = V, random = rnd, data = dat, method = m)
    }
    cl <- dat[[outer]]
    cases[[length(cases) + 1]] <- list(
      method = m, test = "z", with_moderators = wm, control = attr(fit, "control"),
      X = rows(fit$X),
      expected = list(coef_names = arr(rownames(fit$beta)), coef = arr(fit$beta[, 1]),
                      sigma2 = arr(fit$sigma2), logLik = as.numeric(logLik(fit)),
                      robust = c(robust_block(fit, cl),
                                 list(CR0 = robust_block(fit, cl, "CR0", FALSE)))))
  }
  lv <- lapply(inner_levels, function(l) arr(as.character(dat[[l]])))
  names(lv) <- inner_levels
  out <- list(source = SOURCE, dataset = dataset, yi = arr(dat$yi), vi = arr(dat$vi),
              levels = lv, random = paste(deparse(rnd), collapse = ""),
              moderators = as.list(moderators), mods = paste(deparse(mods), collapse = ""),
              rho = rho,
              vcalc = sprintf("vcalc(vi, cluster = %s, obs = %s, rho = %g)", outer,
                              inner_levels[length(inner_levels)], rho),
              V_offdiag = od$values, V_offdiag_row = od$row, V_offdiag_col = od$col,
              cases = cases)
  write_reference(out, paste0("robustmv_", name, ".json"))
}

d <- dat.assink2016
che_reference("assink2016", "dat.assink2016", d, "study", c("study", "esid"), 0.6,
              data.frame(year = d$year, deltype = d$deltype), ~ year + deltype)

d <- escalc("ZCOR", ri = ri, ni = ni, data = dat.crede2010)
d$esid <- seq_len(nrow(d))
che_reference("crede2010", "dat.crede2010 (ZCOR)", d, "studyid",
              c("studyid", "sampleid", "esid"), 0.6,
              data.frame(source = d$source), ~ source)

d <- dat.tannersmith2016
d$esid <- ave(d$studyid, d$studyid, FUN = seq_along)
che_reference("tannersmith2016", "dat.tannersmith2016", d, "studyid",
              c("studyid", "esid"), 0.6,
              data.frame(propmale = d$propmale), ~ propmale)

## ---------------------------------------------------------------------------
## rma.mv: multivariate (random = ~ outcome | study), V = vcalc(type = outcome)
## ---------------------------------------------------------------------------
d <- dat.kalaian1996
V <- vcalc(vi, cluster = study, type = outcome, rho = 0.66, data = d)
cases <- list()
for (s in c("UN", "CS", "HCS", "DIAG")) for (mods in list(~ outcome - 1, ~ outcome + ets)) {
  fit <- fit_mv(yi = d$yi, V = V, mods = mods, random = ~ outcome | study, struct = s,
                data = d)
  cases[[length(cases) + 1]] <- list(
    method = "REML", test = "z", struct = s, mods = paste(deparse(mods), collapse = ""),
    control = attr(fit, "control"),
    X = rows(fit$X),
    expected = list(coef_names = arr(rownames(fit$beta)), coef = arr(fit$beta[, 1]),
                    sigma2 = 0, tau2 = arr(fit$tau2), rho = arr(fit$rho),
                    logLik = as.numeric(logLik(fit)),
                    robust = c(robust_block(fit, d$study),
                               list(CR0 = robust_block(fit, d$study, "CR0", FALSE)))))
}
write_reference(list(source = SOURCE, dataset = "dat.kalaian1996", yi = arr(d$yi),
                     vi = arr(d$vi), cluster = arr(as.character(d$study)),
                     outcome = arr(as.character(d$outcome)), V = unname(V),
                     vcalc = "vcalc(vi, cluster = study, type = outcome, rho = 0.66)",
                     moderators = list(ets = arr(d$ets)), cases = cases),
                "robustmv_kalaian1996.json")
