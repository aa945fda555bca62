#!/usr/bin/env Rscript
## Generates tests/reference/plots.json: the numbers metafor's plot functions
## return, for the data behind alliance_meta's bubble, Baujat, radial and profile
## plots (metafor 3.8.1, tight control).
##
##   regplot(fit, mod = M)   -> xi, psize (plim = c(0.5, 3)), pred (yi.pred), and the
##                              band regplot draws: predict(fit, newmods = Xnew) on
##                              its 1000-point grid (other moderators at colMeans(X))
##   baujat(fit)             -> x (squared Pearson residual), y (influence)
##   radial(fit)             -> x = 1/sqrt(vi + tau2), y = yi/sqrt(vi + tau2)
##   profile(fit)            -> the tau2 grid (steps = 20, metafor's default xlim),
##                              ll at each grid value, beta at each, maxll, xlim;
##                              and the Q-profile CI of tau2 behind that xlim, from
##                              confint() as profile() calls it (uniroot tol
##                              eps^0.25) and with tol = 1e-12
##   funnel(fit)             -> x, y (sei) and the reference line: yi against sqrt(vi)
##                              around beta for an intercept-only model, else
##                              rstandard(fit)'s resid against its se around 0
##   predict(fit)            -> pred, ci.lb, ci.ub at each study (the fitted values
##                              forest() adds per study to a meta-regression)
##   funnel(trimfill(fit))   -> x, y, fill (intercept-only random-effects cases)
##
## Run from the repository root:
##     Rscript tests/reference/generate_plots.R

source("tests/reference/reference_common.R")

bcg <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
mol <- escalc(measure = "ZCOR", ri = ri, ni = ni, data = dat.molloy2014)
rau <- dat.raudenbush1985
## a small set with little heterogeneity (tau2 estimate near 0 under REML)
syn <- data.frame(yi = c(0.12, 0.30, 0.05, 0.22, 0.18, 0.26),
                  vi = c(0.02, 0.05, 0.03, 0.04, 0.02, 0.06),
                  x = c(1, 2, 3, 4, 5, 6))

graphics_off <- function() invisible(dev.off())

mat_rows <- function(M) lapply(seq_len(nrow(M)), function(i) arr(M[i, ]))

one_case <- function(name, data, formula, method, test = "z", mod = NULL) {
  fit <- if (is.null(formula)) {
    rma(yi, vi, data = data, method = method, test = test, control = CTL)
  } else {
    rma(yi, vi, mods = formula, data = data, method = method, test = test, control = CTL)
  }
  out <- list(
    name = name, method = method, test = test,
    formula = if (is.null(formula)) NULL else paste(deparse(formula), collapse = ""),
    yi = arr(fit$yi), vi = arr(fit$vi), X = mat_rows(fit$X),
    coef_names = arr(rownames(fit$beta)), coef = arr(fit$beta), tau2 = fit$tau2,
    vcov = mat_rows(vcov(fit)), logLik = as.numeric(logLik(fit)),
    weights = arr(weights(fit))
  )
  pdf(NULL)
  b <- baujat(fit)
  graphics_off()
  out$baujat <- list(x = arr(b$x), y = arr(b$y))
  pdf(NULL)
  fu <- funnel(fit)
  graphics_off()
  out$funnel <- list(x = arr(fu$x), y = arr(fu$y),
                     refline = if (fit$int.only) c(fit$beta) else 0)
  if (!fit$int.only) {
    pf <- predict(fit)
    out$fitted <- list(pred = arr(pf$pred), ci_lb = arr(pf$ci.lb), ci_ub = arr(pf$ci.ub))
  } else if (method != "EE") {
    tf <- trimfill(fit)
    pdf(NULL)
    ft <- funnel(tf)
    graphics_off()
    out$trimfill_funnel <- list(x = arr(ft$x), y = arr(ft$y), fill = arr(ft$fill),
                                refline = c(tf$beta), k0 = tf$k0)
  }
  if (fit$int.only) {
    pdf(NULL)
    r <- radial(fit)
    graphics_off()
    out$radial <- list(x = arr(r$x), y = arr(r$y))
  }
  if (!is.null(mod)) {
    pdf(NULL)
    rp <- regplot(fit, mod = mod, pi = method != "EE")
    graphics_off()
    ## the band regplot draws (its own code: 1000 points over predlim, the other
    ## columns of X at their means)
    X <- fit$X
    pos <- match(mod, colnames(X))
    xi <- X[, pos]
    rng <- max(xi) - min(xi)
    xs <- seq(min(xi) - 0.04 * rng, max(xi) + 0.04 * rng, length = 1000)
    Xnew <- rbind(colMeans(X))[rep(1, 1000), , drop = FALSE]
    Xnew[, pos] <- xs
    Xnew <- Xnew[, -1, drop = FALSE]
    p <- predict(fit, newmods = Xnew)
    keep <- c(1, seq(100, 1000, by = 100))
    out$regplot <- list(
      mod = mod, xi = arr(rp$xi), yi = arr(rp$yi), psize = arr(rp$psize),
      pred = arr(rp$pred),
      band = list(index = arr(keep), xs = arr(xs[keep]), pred = arr(p$pred[keep]),
                  ci_lb = arr(p$ci.lb[keep]), ci_ub = arr(p$ci.ub[keep]),
                  pi_lb = if (is.null(p$pi.lb)) NULL else arr(p$pi.lb[keep]),
                  pi_ub = if (is.null(p$pi.ub)) NULL else arr(p$pi.ub[keep])),
      colmeans = arr(colMeans(X))
    )
  }
  if (method != "EE") {
    pr <- profile(fit, plot = FALSE, progbar = FALSE)
    out$profile <- list(
      tau2 = arr(pr$tau2), ll = arr(pr$ll), beta = mat_rows(as.matrix(pr$beta)),
      xlim = arr(pr$xlim), maxll = as.numeric(pr$maxll), vc = pr$vc
    )
    ## the Q-profile CI behind metafor's default xlim: confint() with its own default
    ## uniroot tolerance (eps^0.25, which profile() uses), and solved tightly
    ci <- confint(fit)
    out$tau2_ci <- arr(ci$random[1, 2:3])
    ci_tight <- confint(fit, control = list(tol = 1e-12))
    out$tau2_ci_tight <- arr(ci_tight$random[1, 2:3])
  }
  out
}

cases <- list(
  one_case("bcg_REML", bcg, NULL, "REML"),
  one_case("bcg_EE", bcg, NULL, "EE"),
  one_case("bcg_DL_knha", bcg, NULL, "DL", test = "knha"),
  one_case("molloy_ML", mol, NULL, "ML"),
  one_case("molloy_PM", mol, NULL, "PM"),
  one_case("syn_REML", syn, NULL, "REML"),
  one_case("bcg_ablat_REML", bcg, ~ ablat, "REML", mod = "ablat"),
  one_case("bcg_ablat_year_REML", bcg, ~ ablat + year, "REML", mod = "ablat"),
  one_case("bcg_ablat_knha", bcg, ~ ablat, "REML", test = "knha", mod = "ablat"),
  one_case("rau_weeks_ML", rau, ~ weeks, "ML", mod = "weeks"),
  one_case("syn_x_EE", syn, ~ x, "EE", mod = "x")
)

write_reference(list(source = SOURCE, R = R.version.string, control = CTL, cases = cases),
                "plots.json")
