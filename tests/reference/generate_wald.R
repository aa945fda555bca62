## Wald tests of coefficient subsets (metafor's anova(fit, btt = ...)) for
## tests/reference/wald_subsets.json.  R 4.2.2, metafor 3.8.1, metadat, jsonlite.
## Run from the repository root: Rscript tests/reference/generate_wald.R
suppressMessages({library(metafor); library(jsonlite)})
CTL <- list(threshold = 1e-12, tol = 1e-12, maxiter = 10000)
CTLMV <- list(rel.tol = 1e-12, iter.max = 10000, eval.max = 10000)
dat <- escalc("RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
dat$alloc <- factor(dat$alloc)
cases <- list()
add <- function(name, fit, btt, kind) {
  a <- anova(fit, btt = btt)
  cases[[length(cases) + 1]] <<- list(
    name = name, kind = kind, method = fit$method, test = fit$test,
    coef_names = rownames(fit$beta), btt = btt,
    QM = a$QM, QMdf = as.numeric(a$QMdf), QMp = a$QMp)
}
for (test in c("z", "knha", "t")) {
  for (method in c("REML", "DL", "EE")) {
    fit <- rma(yi, vi, mods = ~ ablat + year + alloc, data = dat, method = method,
               test = test, control = CTL)
    add(paste("bcg", method, test, "alloc", sep = "_"), fit, 4:5, "uni")
    add(paste("bcg", method, test, "ablat_year", sep = "_"), fit, 2:3, "uni")
  }
}
as <- dat.assink2016
for (test in c("z", "t")) {
  fit <- rma.mv(yi, vi, mods = ~ deltype + year, random = ~ 1 | study/esid,
                data = as, test = test, control = CTLMV)
  add(paste("assink2016", test, "deltype", sep = "_"), fit, 2:3, "mv")
}
out <- list(source = "metafor 3.8.1 anova(fit, btt = ); generate_wald.R",
            bcg = list(yi = as.numeric(dat$yi), vi = as.numeric(dat$vi),
                       ablat = dat$ablat, year = dat$year, alloc = as.character(dat$alloc)),
            assink2016 = list(yi = as$yi, vi = as$vi, study = as$study, esid = as$esid,
                              deltype = as$deltype, year = as$year),
            cases = cases)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = FALSE),
           "tests/reference/wald_subsets.json")
