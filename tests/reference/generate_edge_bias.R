#!/usr/bin/env Rscript
## Generates tests/reference/edge_bias.json: edge behaviour of metafor 3.8.1's bias
## and effect-size functions that a run on unseen data sets found alliance_meta
## handled differently (fsn rounding and Orwin's target sign, trimfill's NaN se.k0
## and Q0 error, k = 2 regtest/ranktest/trimfill, ROM of two negative means).
##
## Run from the repository root:
##     Rscript tests/reference/generate_edge_bias.R

source("tests/reference/reference_common.R")

num <- function(x) if (is.null(x) || length(x) == 0) NA else as.numeric(x)

## fail-safe N, Orwin: near-integer N (rounding) and a target of the other sign
fsn_case <- function(yi, vi, target) {
  f <- fsn(yi, vi, type = "Orwin", target = target)
  list(yi = arr(yi), vi = arr(vi), target = target, n = f$fsnum, target_used = f$target,
       mean = f$meanes)
}
fsn_cases <- list(
  fsn_case(c(0.1, 0.2), c(0.01, 0.01), 0.1),     # k (mean - t)/t = 1 + 2e-16
  fsn_case(c(0.1, 0.2), c(0.01, 0.01), -0.1),    # target negated
  fsn_case(c(0.1, 0.2), c(0.01, 0.01), 0.07),    # 2.29: rounded up
  fsn_case(c(-0.3, -0.5, -0.2), c(0.02, 0.03, 0.04), 0.1)
)

## trim and fill, DL: se.k0 NaN (L0 variance negative), and Q0's negative root
tf_y1 <- c(0.25, 0.18, 0.38, 0.22, 0.56, 0.52)
tf_v1 <- c(0.087, 0.058, 0.064, 0.088, 0.088, 0.015)
tf1 <- trimfill(rma(tf_y1, tf_v1, method = "DL", control = CTL), side = "left")
tf_y2 <- c(0.09, 0.41, 0.53, 0.27, 0.56, 0.42)
tf_v2 <- c(0.034, 0.099, 0.067, 0.029, 0.022, 0.053)
q0_error <- tryCatch({
  trimfill(rma(tf_y2, tf_v2, method = "DL", control = CTL), estimator = "Q0", side = "left")
  NA
}, error = function(e) conditionMessage(e))

## k = 2 with an equal-effects fit
y2 <- c(0.1, 0.5); v2 <- c(0.01, 0.04)
ee <- rma(y2, v2, method = "EE")
rt <- regtest(ee)
rt_lm <- suppressWarnings(regtest(ee, model = "lm"))
rk <- ranktest(ee)
rk_approx <- suppressWarnings(ranktest(ee, exact = FALSE))
tf2 <- trimfill(ee)
re_error <- tryCatch({ regtest(rma(y2, v2, method = "REML")); NA },
                     error = function(e) conditionMessage(e))

## ROM of two negative means
rom <- escalc("ROM", m1i = c(-2, -3.5), sd1i = c(1, 2), n1i = c(10, 25),
              m2i = c(-4, -3), sd2i = c(1, 1.5), n2i = c(10, 30))

write_reference(list(
  source = SOURCE, control = CTL,
  fsn_orwin = fsn_cases,
  trimfill_nan_se = list(yi = arr(tf_y1), vi = arr(tf_v1), side = "left", k0 = tf1$k0,
                         se_k0 = num(tf1$se.k0)),
  trimfill_q0_error = list(yi = arr(tf_y2), vi = arr(tf_v2), side = "left",
                           error = q0_error),
  k2 = list(yi = arr(y2), vi = arr(v2),
            regtest_rma = list(zval = rt$zval, pval = rt$pval, beta = arr(rt$fit$beta),
                               se = arr(rt$fit$se)),
            regtest_lm = list(zval = num(rt_lm$zval), pval = num(rt_lm$pval), dfs = rt_lm$dfs,
                              beta = arr(rt_lm$fit$coefficients)),
            ranktest = list(tau = unname(rk$tau), pval = rk$pval),
            ranktest_approx = list(tau = unname(rk_approx$tau), pval = num(rk_approx$pval)),
            trimfill = list(side = tf2$side, k0 = tf2$k0, se_k0 = tf2$se.k0,
                            beta = c(tf2$beta)),
            regtest_reml_error = re_error),
  rom_negative = list(m1i = arr(c(-2, -3.5)), sd1i = arr(c(1, 2)), n1i = arr(c(10, 25)),
                      m2i = arr(c(-4, -3)), sd2i = arr(c(1, 1.5)), n2i = arr(c(10, 30)),
                      yi = arr(rom$yi), vi = arr(rom$vi))
), "edge_bias.json")
