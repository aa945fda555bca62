#!/usr/bin/env Rscript
## Generates tests/reference/rstyle.json: metafor's default control, fits with
## vi = 0 (and their diagnostics), and predict() of formula models with transf.
##
##   control_default  rma(yi, vi, method = M) with metafor's DEFAULT control
##                    (threshold = 1e-5, tol = .Machine$double.eps^0.25,
##                    maxiter = 100), and the same call with the tight CTL, on
##                    metadat data sets; also meta-regressions and one
##                    ll0check case
##   vi_zero          rma(yi, vi = 0, mods = ...) (metafor's "regression with rma"
##                    example on stackloss) and a pooled model with one vi = 0,
##                    with influence(), and the errors of the estimators that
##                    refuse vi = 0
##   predict          predict(rma(yi, vi, mods = FORMULA, data = dat), newmods,
##                    transf) and predict() of pooled models with transf
##   pval_format      metafor:::.pval(p, digits = 4), how its printouts write p
##
## Run from the repository root:
##     Rscript tests/reference/generate_rstyle.R

source("tests/reference/reference_common.R")

fit_fields <- function(res) {
  list(coef_names = arr(rownames(res$beta)), coef = arr(res$beta), se = arr(res$se),
       statistic = arr(res$zval), pvalue = arr(res$pval), ci_lb = arr(res$ci.lb),
       ci_ub = arr(res$ci.ub), tau2 = res$tau2, tau2_se = res$se.tau2, QE = res$QE,
       QE_p = res$QEp, QM = res$QM, QM_p = res$QMp, I2 = res$I2, H2 = res$H2,
       R2 = if (is.null(res$R2)) NA else res$R2)
}

err_of <- function(expr) tryCatch({ expr; NA }, error = function(e) conditionMessage(e))

## ---------------------------------------------------------------- data sets
bcg <- escalc("RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
raud <- dat.raudenbush1985
mcd <- escalc("ZCOR", ri = ri, ni = ni, data = dat.mcdaniel1994)
normand <- escalc("SMD", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i,
                  n2i = n2i, data = dat.normand1999)
molloy <- escalc("ZCOR", ri = ri, ni = ni, data = dat.molloy2014)
sets <- list(bcg = bcg, raudenbush1985 = raud, mcdaniel1994 = mcd, normand1999 = normand,
             molloy2014 = molloy)

## ---------------------------------------------------------------- control
control_default <- list()
for (nm in names(sets)) {
  d <- sets[[nm]]
  out <- list(yi = arr(d$yi), vi = arr(d$vi))
  for (m in c("ML", "REML", "EB", "PM", "PMM")) {
    def <- rma(yi, vi, data = d, method = m)
    tight <- rma(yi, vi, data = d, method = m, control = CTL)
    out[[m]] <- list(default = fit_fields(def), tight = fit_fields(tight))
  }
  control_default[[nm]] <- out
}
## trimfill(rma(...)) with the default control (trimfill's refits use it too)
tf <- trimfill(rma(yi, vi, data = molloy))
trimfill_default <- list(k0 = tf$k0, coef = tf$beta[1], tau2 = tf$tau2, se = tf$se)
## meta-regressions with the default control
metareg_default <- list()
for (m in c("ML", "REML", "EB", "PM")) {
  def <- rma(yi, vi, mods = ~ ablat + year, data = bcg, method = m)
  tight <- rma(yi, vi, mods = ~ ablat + year, data = bcg, method = m, control = CTL)
  metareg_default[[m]] <- list(default = fit_fields(def), tight = fit_fields(tight))
}
## a REML fit whose Fisher scoring from the HE start stops at a local maximum that
## metafor's ll0check (with the default tol) then sets to 0: the lau1992_subset case
## of reml_peaks.json (written by generate_reml_peaks.R)
ll0 <- fromJSON(file.path(OUTDIR, "reml_peaks.json"))$cases$lau1992_subset
ll0_warned <- FALSE
ll0_fit <- withCallingHandlers(rma(ll0$yi, ll0$vi, method = "REML"),
                               warning = function(w) {
                                 ll0_warned <<- TRUE
                                 invokeRestart("muffleWarning")
                               })
control_ll0 <- c(list(yi = arr(ll0$yi), vi = arr(ll0$vi), ll0check_warning = ll0_warned),
                 fit_fields(ll0_fit))

## ---------------------------------------------------------------- vi = 0
dat <- stackloss
lm_fit <- lm(stack.loss ~ Air.Flow + Water.Temp + Acid.Conc., data = dat)
lm_out <- list(coef = arr(coef(lm_fit)), se = arr(sqrt(diag(vcov(lm_fit)))),
               sigma2 = summary(lm_fit)$sigma^2, rstudent = arr(rstudent(lm_fit)),
               cooks = arr(cooks.distance(lm_fit)), hat = arr(hatvalues(lm_fit)),
               dfbetas = arr(t(dfbetas(lm_fit))))
inf_fields <- function(res) {
  inf <- influence(res)
  list(rstudent = arr(inf$inf$rstudent), dffits = arr(inf$inf$dffits),
       cook_d = arr(inf$inf$cook.d), cov_r = arr(inf$inf$cov.r),
       tau2_del = arr(inf$inf$tau2.del), QE_del = arr(inf$inf$QE.del),
       hat = arr(inf$inf$hat), weight = arr(inf$inf$weight),
       dfbetas = arr(t(as.matrix(inf$dfbs))), influential = arr(inf$is.infl))
}
stack_fits <- list()
for (m in c("REML", "ML", "HE", "SJ", "EB")) {
  for (tt in c("z", "knha")) {
    res <- suppressWarnings(rma(stack.loss, 0, mods = ~ Air.Flow + Water.Temp + Acid.Conc.,
                                data = dat, method = m, test = tt, control = CTL))
    stack_fits[[paste(m, tt, sep = "_")]] <- c(fit_fields(res), list(influence = inf_fields(res)))
  }
}
stack_errors <- list()
for (m in c("EE", "DL", "HS", "HSk", "PM", "PMM")) {
  stack_errors[[m]] <- err_of(suppressWarnings(
    rma(stack.loss, 0, mods = ~ Air.Flow + Water.Temp + Acid.Conc., data = dat, method = m)))
}
## a pooled model with one study of vi = 0 (bcg, study 5's variance set to 0)
bcg0 <- bcg
bcg0$vi[5] <- 0
pooled_zero <- list(yi = arr(bcg0$yi), vi = arr(bcg0$vi))
for (m in c("REML", "ML", "HE", "SJ", "EB")) {
  res <- suppressWarnings(rma(yi, vi, data = bcg0, method = m, control = CTL))
  eg <- suppressWarnings(regtest(res))
  pooled_zero[[m]] <- c(fit_fields(res), list(pi_lb = predict(res)$pi.lb,
                                              pi_ub = predict(res)$pi.ub,
                                              regtest_z = eg$zval, regtest_p = eg$pval,
                                              influence = inf_fields(res)))
}
pooled_zero$REML_metareg <- c(fit_fields(
  suppressWarnings(rma(yi, vi, mods = ~ ablat, data = bcg0, control = CTL))))

## ---------------------------------------------------------------- predict
bcg$alloc_f <- factor(bcg$alloc)
res_int <- rma(yi, vi, mods = ~ ablat * alloc, data = bcg, control = CTL)
new <- data.frame(ablat = c(10, 35, 50), alloc = factor(c("random", "systematic", "alternate"),
                                                        levels = levels(factor(bcg$alloc))))
nm <- model.matrix(~ ablat * alloc, data = new)[, -1]
pred_fields <- function(p) list(pred = arr(p$pred), se = arr(p$se), ci_lb = arr(p$ci.lb),
                                ci_ub = arr(p$ci.ub), pi_lb = arr(p$pi.lb), pi_ub = arr(p$pi.ub))
predict_out <- list(
  interaction = list(formula = "~ ablat * alloc", new = list(ablat = arr(new$ablat),
                     alloc = arr(as.character(new$alloc))),
                     plain = pred_fields(predict(res_int, newmods = nm)),
                     exp = pred_fields(predict(res_int, newmods = nm, transf = exp)))
)
res_rel <- rma(yi, vi, mods = ~ I(year - 1950) + relevel(factor(alloc), ref = "random"),
               data = bcg, test = "knha", control = CTL)
new2 <- data.frame(year = c(1940, 1960), alloc = c("alternate", "random"))
nm2 <- model.matrix(~ I(year - 1950) + relevel(factor(alloc, levels = levels(factor(bcg$alloc))),
                                               ref = "random"), data = new2)[, -1]
nm2 <- unname(nm2)
predict_out$relevel <- list(formula = "~ I(year - 1950) + relevel(factor(alloc), ref = 'random')",
                            new = list(year = arr(new2$year), alloc = arr(new2$alloc)),
                            plain = pred_fields(predict(res_rel, newmods = nm2)))
res_noint <- rma(yi, vi, mods = ~ alloc - 1, data = bcg, control = CTL)
predict_out$no_intercept <- list(formula = "~ alloc - 1",
                                 new = list(alloc = arr(c("random", "alternate"))),
                                 plain = pred_fields(predict(res_noint,
                                   newmods = rbind(c(0, 1, 0), c(1, 0, 0)))))
## pooled models: predict(fit, transf = ...)
pz <- rma(yi, vi, data = mcd, control = CTL)
predict_out$pooled_zcor <- list(plain = pred_fields(predict(pz)),
                                ztor = pred_fields(predict(pz, transf = transf.ztor)))
pr <- rma(yi, vi, data = bcg, test = "knha", control = CTL)
predict_out$pooled_rr <- list(test = "knha", plain = pred_fields(predict(pr)),
                              exp = pred_fields(predict(pr, transf = exp)))

## ---------------------------------------------------------------- p-values
## how print.rma.uni writes p-values: metafor:::.pval(p, digits = 4)
pv <- c(0.5, 0.123456, 0.0316, 0.00999, 0.0001, 0.00009999, 1e-10, 1, 0.99996, 0.00005)
pval_format <- list(p = arr(pv), text = arr(metafor:::.pval(pv, digits = 4)))

write_reference(list(source = SOURCE, R = R.version.string, control_tight = CTL,
                     pval_format = pval_format, trimfill_default = trimfill_default,
                     control_default = control_default, metareg_default = metareg_default,
                     control_ll0 = control_ll0, lm = lm_out, stackloss = stack_fits,
                     stackloss_errors = stack_errors, pooled_zero = pooled_zero,
                     predict = predict_out),
                "rstyle.json")
