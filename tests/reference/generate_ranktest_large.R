#!/usr/bin/env Rscript
## Generates tests/reference/ranktest_large.json: Begg & Mazumdar's rank test on
## sets of k = 30, 60 and 120 studies without ties, by metafor's ranktest (whose
## default exact = TRUE gives the exact p-value at any k) and by cor.test with
## exact = FALSE (the normal approximation, which R's cor.test uses by default from
## k = 50 on).  Run from the repository root:
##     Rscript tests/reference/generate_ranktest_large.R

source("tests/reference/reference_common.R")

set.seed(18)
out <- list()
for (k in c(30, 60, 120)) {
  vi <- runif(k, 0.01, 0.3)
  yi <- rnorm(k, 0.2 + 0.8 * sqrt(vi), sqrt(vi + 0.02))
  fit <- rma(yi, vi, method = "EE")
  rk_exact <- ranktest(fit)                      # metafor's default: exact = TRUE
  rk_approx <- ranktest(fit, exact = FALSE)
  wi <- 1 / vi
  theta <- sum(wi * yi) / sum(wi)
  ystar <- (yi - theta) / sqrt(vi - 1 / sum(wi))
  ct_default <- cor.test(ystar, vi, method = "kendall")  # exact = NULL: n < 50
  out[[paste0("k", k)]] <- list(
    yi = arr(yi), vi = arr(vi), tau = unname(rk_exact$tau),
    pval_exact = rk_exact$pval, pval_approx = rk_approx$pval,
    pval_cortest_default = ct_default$p.value)
}
write_reference(list(source = SOURCE, R = R.version.string,
                     call = "ranktest(rma(yi, vi, method = 'EE'), exact = TRUE / FALSE)",
                     cases = out), "ranktest_large.json")
