#!/usr/bin/env Rscript
## References of the depdocs branch (fields in PROVENANCE_depdocs.md):
##   clubsandwich_subgroups.json  clubSandwich / metafor robust() on common-tau^2 subgroup
##                                models, rma(yi, vi, mods = ~ g), clustered by study
##   che_alliance_dependent.json  the CHE + CR2 workflow on the bundled simulated
##                                alliance example over a grid of rho: vcalc V,
##                                rma.mv(random = ~ 1 | study/effect), clubSandwich CR2
##
## Run from the repository root:
##     Rscript tests/reference/generate_depdocs.R

source("tests/reference/reference_common.R")
suppressPackageStartupMessages(library(clubSandwich))
SOURCE <- paste(SOURCE, "clubSandwich", as.character(packageVersion("clubSandwich")))
MVCTL <- list(rel.tol = 1e-12, eval.max = 10000, iter.max = 10000)

## as generate_robust.R: nlminb at rel.tol = 1e-12, or 1e-10 where nlminb reports
## non-convergence at 1e-12 (the control used is recorded with each case)
fit_mv <- function(...) {
  args <- list(...)
  for (ctl in list(MVCTL, modifyList(MVCTL, list(rel.tol = 1e-10)))) {
    fit <- try(do.call(rma.mv, c(args, list(control = ctl))), silent = TRUE)
    if (!inherits(fit, "try-error")) {
      attr(fit, "control") <- sprintf("nlminb rel.tol = %g", ctl$rel.tol)
      return(fit)
    }
  }
  stop("rma.mv did not converge")
}

## as generate_robust.R: clubSandwich CR2 (or CR0) with the model's own weights,
## and metafor's robust()
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

alliance <- read.csv("alliance_meta/datasets/alliance_dependent.csv",
                     stringsAsFactors = FALSE)
alliance <- escalc("ZCOR", ri = r, ni = n, data = alliance)

## ---------------------------------------------------------------------------
## common-tau^2 subgroup models: rma(yi, vi, mods = ~ g)
## ---------------------------------------------------------------------------
sub_cases <- list()
sub_case <- function(data, yi, vi, g, cluster, method, test) {
  g <- as.character(g)
  fit <- rma(yi, vi, mods = ~ g, method = method, test = test, control = CTL)
  rb <- robust_block(fit, cluster)
  rb$CR0 <- robust_block(fit, cluster, "CR0", metafor_robust = FALSE)
  sub_cases[[length(sub_cases) + 1]] <<- list(
    data = data, method = method, test = test,
    yi = arr(yi), vi = arr(vi), group = arr(g), cluster = arr(as.character(cluster)),
    expected = list(coef_names = arr(rownames(fit$beta)), coef = arr(fit$beta[, 1]),
                    tau2 = fit$tau2, QM = fit$QM, robust = rb))
}
d <- dat.lopez2019
sub_case("dat.lopez2019 (diff, se^2, g = group)", d$diff, d$se^2, d$group, d$study,
         "REML", "z")
sub_case("dat.lopez2019 (diff, se^2, g = group)", d$diff, d$se^2, d$group, d$study,
         "DL", "t")
sub_case("dat.lopez2019 (diff, se^2, g = group)", d$diff, d$se^2, d$group, d$study,
         "EE", "z")
d <- escalc("ZCOR", ri = ri, ni = ni, data = dat.crede2010)
sub_case("dat.crede2010 (ZCOR, g = source)", c(d$yi), c(d$vi), d$source, d$studyid,
         "REML", "z")
d <- alliance
sub_case("alliance_dependent (ZCOR, g = rater)", c(d$yi), c(d$vi), d$rater, d$study,
         "REML", "z")
write_reference(list(source = SOURCE, cases = sub_cases), "clubsandwich_subgroups.json")

## ---------------------------------------------------------------------------
## CHE + CR2 over a grid of rho, on the simulated alliance example
## ---------------------------------------------------------------------------
d <- alliance
che_cases <- list()
for (rho in c(0.2, 0.4, 0.6, 0.8)) for (wm in c(FALSE, TRUE)) {
  V <- vcalc(vi, cluster = study, obs = effect, rho = rho, data = d)
  if (wm) {
    fit <- fit_mv(yi = d$yi, V = V, mods = ~ rater + dimension,
                  random = ~ 1 | study/effect, data = d)
  } else {
    fit <- fit_mv(yi = d$yi, V = V, random = ~ 1 | study/effect, data = d)
  }
  che_cases[[length(che_cases) + 1]] <- list(
    rho = rho, with_moderators = wm, method = "REML", test = "z",
    control = attr(fit, "control"),
    expected = list(coef_names = arr(rownames(fit$beta)), coef = arr(fit$beta[, 1]),
                    se = arr(fit$se), sigma2 = arr(fit$sigma2),
                    logLik = as.numeric(logLik(fit)),
                    robust = robust_block(fit, d$study)))
}
write_reference(list(source = SOURCE,
                     dataset = "alliance_dependent.csv (SIMULATED), escalc ZCOR",
                     yi = arr(c(d$yi)), vi = arr(c(d$vi)), study = arr(d$study),
                     effect = arr(d$effect), rater = arr(d$rater),
                     dimension = arr(d$dimension),
                     vcalc = "vcalc(vi, cluster = study, obs = effect, rho = rho)",
                     random = "~ 1 | study/effect", mods = "~ rater + dimension",
                     cases = che_cases),
                "che_alliance_dependent.json")
