#!/usr/bin/env Rscript
## Generates tests/reference/stress_offsets.json: every tau^2 estimator of rma.uni
## on simulated data sets chosen to stress the numerics of the intercept-only core
## (effects far from zero, variances spread over orders of magnitude, one dominant
## weight, k from 2 to 30).
##
## Run from the repository root:
##     Rscript tests/reference/generate_stress_offsets.R
##
## Offsets stay within |1e3|: metafor forms Q as y'Py without centring, which
## itself loses about eps * offset^2 * sum(w) / Q relative, so much larger offsets
## would test metafor's rounding rather than ours.

source("tests/reference/reference_common.R")
METHODS_ALL <- c("EE", "DL", "HE", "HS", "HSk", "SJ", "ML", "REML", "EB", "PM", "PMM")
num <- function(x) if (is.null(x) || length(x) == 0) NA else as.numeric(x)

set.seed(20261125)
N <- 60
KS <- c(2, 3, 5, 10, 30)
OFFSETS <- c(0, 10, -250, 1000)
sets <- vector("list", N)
for (i in seq_len(N)) {
  k <- KS[(i - 1) %% length(KS) + 1]
  offset <- OFFSETS[((i - 1) %/% length(KS)) %% length(OFFSETS) + 1]
  vtype <- c("uniform", "spread", "dominant")[(i - 1) %% 3 + 1]
  vi <- switch(vtype,
    uniform = runif(k, 0.01, 0.2),
    spread = exp(runif(k, -9, 1)),
    dominant = { v <- runif(k, 0.05, 0.5); v[1] <- 1e-6; v })
  tau2_true <- c(0, 0.05, 1)[(i - 1) %% 3 + 1]
  yi <- offset + rnorm(k, 0.3, sqrt(tau2_true + vi))
  fits <- list()
  for (m in METHODS_ALL) {
    f <- tryCatch(rma(yi, vi, method = m, control = CTL), error = function(e) NULL)
    if (is.null(f)) {
      message("failed: set ", i, " ", m)
      next
    }
    fits[[m]] <- list(estimate = num(f$beta[1]), se = num(f$se[1]), tau2 = num(f$tau2),
                      se_tau2 = if (m == "EE") NA else num(f$se.tau2),
                      Q = num(f$QE), I2 = num(f$I2), H2 = num(f$H2))
  }
  sets[[i]] <- list(id = i, k = k, offset = offset, vi_type = vtype, tau2_true = tau2_true,
                    yi = arr(yi), vi = arr(vi), fits = fits)
}
write_reference(list(source = SOURCE,
                     dataset = sprintf("%d simulated data sets, set.seed(20261125)", N),
                     control = CTL, datasets = sets),
                "stress_offsets.json")
