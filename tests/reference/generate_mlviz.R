#!/usr/bin/env Rscript
## Generates tests/reference/mlviz_*.json (mlviz helper): metafor 3.8.1's
## diagnostics of rma.mv fits, for the forest / funnel / leave_one_out / influence
## of multilevel and multivariate fits in alliance_meta:
##   * mlviz_konstantopoulos2011.json  ~ 1 | district/school; intercept-only REML z
##                                     and ~ year ML t; cluster = district
##   * mlviz_assink2016.json           ~ 1 | study/esid, mods ~ deltype (a factor:
##                                     some deletions leave a level empty), REML z;
##                                     cluster = study
##   * mlviz_assink2016_che.json       CHE working V = vcalc(vi, study, obs = esid,
##                                     rho = 0.6), ~ 1 | study/esid, intercept-only
##                                     REML z; cluster = study
##   * mlviz_berkey1998.json           multivariate, V from v1i/v2i, mods ~ outcome - 1,
##                                     random = ~ outcome | trial, struct UN, REML z;
##                                     cluster = trial
##   * mlviz_crede2010.json            three nested levels studyid/sampleid/esid (ZCOR),
##                                     ~ criterion, REML z; clusters studyid and the
##                                     samples (studyid/sampleid); cluster-level
##                                     diagnostics only
##   * mlviz_kalaian1996.json          bivariate (V: vcalc, type = outcome, rho = 0.66;
##                                     many studies give one outcome), ~ outcome - 1,
##                                     struct HCS REML z and CS ML t; cluster = study;
##                                     cluster-level diagnostics only
## For every case:
##   fit            coef, se, sigma2/tau2/rho, logLik of the fit
##   weights        weights(fit) (metafor: the diagonal of W = M^-1, in %; NOT each
##                  effect's share of the estimate, metafor issue #52)
##   weights_rowsum weights(fit, type = "rowsum") (intercept-only fits: the shares
##                  1'W / 1'W1 of the estimate, in %)
##   hat            hatvalues(fit)
##   cooks_effect   cooks.distance(fit)                       (one per effect)
##   cooks_cluster  cooks.distance(fit, cluster = <cluster>)  (names: cluster ids)
##   rstudent_effect  rstudent(fit): resid, se, z             (one per effect)
##   rstudent_cluster rstudent(fit, cluster =): obs (resid, se, z per effect) and
##                  cluster (X2, k, slab)
##   dfbetas_effect   dfbetas(fit)                            (rows: effects)
##   dfbetas_cluster  dfbetas(fit, cluster =)                 (rows: cluster ids)
##   loo_cluster    for every cluster id (order of first appearance), rma.mv refitted
##                  without it (subset =): coef, se, zval, pval, ci.lb, ci.ub,
##                  sigma2, tau2, rho, QE, QEp, logLik, k, coef_na (TRUE when a
##                  design column is empty: metafor drops it, the diagnostics are NA),
##                  and `warm`: the same refit started at the fit's components with
##                  the fit's control, as cooks.distance & co. make it (logLik,
##                  sigma2, tau2, rho, coef; null if it fails)
##   funnel         sav <- funnel(fit) (on a null device): the plotted x, y, and the
##                  reference line (beta for intercept-only fits, 0 otherwise)
## Every rma.mv fit uses nlminb with control = list(rel.tol = 1e-12, eval.max = 10000,
## iter.max = 10000); where nlminb cannot confirm 1e-12 it is redone with 1e-11, then
## 1e-10 (recorded in nlminb_rel_tol).  cooks.distance / rstudent / dfbetas refit with
## the fit's control: an entry that is NA because its refit fails at 1e-12 is taken
## from the same function applied to the fit at 1e-11, then 1e-10; entries NA at
## every tolerance (or where metafor drops a coefficient) stay null.  A
## leave-one-cluster-out refit that fails at every tolerance is {id, failed: true}.
##
## Run from the repository root:
##     Rscript tests/reference/generate_mlviz.R

source("tests/reference/reference_common.R")

## MLVIZ_ONLY=name1,name2 regenerates only those files (e.g. MLVIZ_ONLY=crede2010)
ONLY <- strsplit(Sys.getenv("MLVIZ_ONLY", ""), ",")[[1]]
want <- function(name) length(ONLY) == 0 || name %in% ONLY

num <- function(x) if (is.null(x)) NULL else unname(as.vector(x))

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

fit_block <- function(fit) {
  list(coef = arr(fit$beta), se = arr(fit$se), sigma2 = arr(fit$sigma2),
       tau2 = arr(fit$tau2), rho = arr(fit$rho), logLik = as.numeric(logLik(fit)),
       k = fit$k, p = fit$p, coef_names = arr(rownames(fit$beta)),
       nlminb_rel_tol = fit$rel_tol)
}

## the fit with nlminb at rel.tol 1e-12, 1e-11, 1e-10 (those that converge): metafor's
## cooks.distance / rstudent / dfbetas refit with the fit's control, and where a refit
## fails at 1e-12 (NA) it is taken from the fit at the next tolerance
fits_at <- function(args) {
  out <- list()
  for (tol in c(1e-12, 1e-11, 1e-10)) {
    a <- args
    a$control <- list(rel.tol = tol, eval.max = 10000, iter.max = 10000)
    f <- try(suppressWarnings(do.call(rma.mv, a)), silent = TRUE)
    if (!inherits(f, "try-error")) out[[length(out) + 1]] <- f
  }
  out
}

## first non-NA value of f(fit) over the fits (f returns a vector or a matrix)
first_ok <- function(fits, f) {
  val <- NULL
  for (fit in fits) {
    v <- try(suppressWarnings(f(fit)), silent = TRUE)
    if (inherits(v, "try-error")) next
    if (is.null(val)) {
      val <- v
    } else {
      miss <- is.na(val)
      val[miss] <- v[miss]
    }
    if (!anyNA(val)) break
  }
  val
}

dfb_matrix <- function(fit, p, cl = NULL) {
  ## dfbetas() fails when every refit fails (rbind of NAs); NA rows then
  d <- try(if (is.null(cl)) dfbetas(fit) else dfbetas(fit, cluster = cl), silent = TRUE)
  if (inherits(d, "try-error")) {
    n <- if (is.null(cl)) fit$k else length(unique(cl))
    ids <- if (is.null(cl)) seq_len(n) else sort(unique(cl))
    return(matrix(NA_real_, n, p, dimnames = list(as.character(ids), NULL)))
  }
  as.matrix(d)
}

## the refit as cooks.distance / rstudent / dfbetas make it (the fit's control, started
## at the fit's variance components): its logLik, components and coefficients (NULL
## if it fails), to show where that warm start stops short of the subset's maximum
warm_refit <- function(fit, a) {
  ctl <- fit$control
  ctl$sigma2.init <- fit$sigma2
  ctl$tau2.init <- fit$tau2
  ctl$rho.init <- fit$rho
  a$control <- ctl
  r <- try(suppressWarnings(do.call(rma.mv, a)), silent = TRUE)
  if (inherits(r, "try-error")) return(NULL)
  list(logLik = as.numeric(logLik(r)), sigma2 = arr(r$sigma2), tau2 = arr(r$tau2),
       rho = arr(r$rho), coef = arr(r$beta))
}

diagnostics <- function(fit, args, cluster, data, by_effect = TRUE) {
  cl <- as.character(cluster)
  ids <- unique(cl)
  fits <- fits_at(args)
  p <- fit$p
  out <- list(fit = fit_block(fit))
  out$weights <- arr(weights(fit))
  if (fit$int.only) out$weights_rowsum <- arr(weights(fit, type = "rowsum"))
  out$hat <- arr(hatvalues(fit))
  if (by_effect) out$cooks_effect <- arr(first_ok(fits, function(f) cooks.distance(f)))
  cd <- first_ok(fits, function(f) cooks.distance(f, cluster = cl))
  out$cooks_cluster <- list(id = arr(names(cd)), value = arr(cd))
  if (by_effect) {
    rs <- first_ok(fits, function(f) {
      r <- rstudent(f)
      cbind(r$resid, r$se, r$z)
    })
    out$rstudent_effect <- list(resid = arr(rs[, 1]), se = arr(rs[, 2]), z = arr(rs[, 3]))
  }
  rc <- rstudent(fit, cluster = cl)
  ro <- first_ok(fits, function(f) {
    r <- rstudent(f, cluster = cl)
    cbind(r$obs$resid, r$obs$se, r$obs$z)
  })
  rx <- first_ok(fits, function(f) rstudent(f, cluster = cl)$cluster$X2)
  out$rstudent_cluster <- list(
    obs = list(resid = arr(ro[, 1]), se = arr(ro[, 2]), z = arr(ro[, 3])),
    cluster = list(id = arr(as.character(rc$cluster$slab)), X2 = arr(rx),
                   k = arr(rc$cluster$k)))
  if (by_effect) {
    db <- first_ok(fits, function(f) dfb_matrix(f, p))
    out$dfbetas_effect <- unname(lapply(seq_len(nrow(db)), function(i) arr(db[i, ])))
  }
  dc <- first_ok(fits, function(f) dfb_matrix(f, p, cl))
  out$dfbetas_cluster <- list(
    id = arr(rownames(dc)),
    value = unname(lapply(seq_len(nrow(dc)), function(i) arr(dc[i, ]))))
  loo <- list()
  for (id in ids) {
    a <- args
    a$subset <- cl != id
    r <- try(fit_tight(a), silent = TRUE)
    if (inherits(r, "try-error")) {
      loo[[length(loo) + 1]] <- list(id = id, failed = TRUE)
      next
    }
    loo[[length(loo) + 1]] <- list(
      id = id, coef = arr(r$beta), se = arr(r$se), zval = arr(r$zval), pval = arr(r$pval),
      ci_lb = arr(r$ci.lb), ci_ub = arr(r$ci.ub), sigma2 = arr(r$sigma2),
      tau2 = arr(r$tau2), rho = arr(r$rho), QE = r$QE, QEp = r$QEp,
      logLik = as.numeric(logLik(r)), k = r$k, coef_na = any(r$coef.na),
      nlminb_rel_tol = r$rel_tol, warm = warm_refit(fit, a))
  }
  out$loo_cluster <- loo
  pdf(NULL)
  sav <- funnel(fit)
  dev.off()
  out$funnel <- list(x = arr(sav$x), y = arr(sav$y),
                     refline = if (fit$int.only) as.numeric(fit$beta) else 0)
  out
}

## --- konstantopoulos2011 ---------------------------------------------------------
if (want("konstantopoulos2011")) {
dat <- dat.konstantopoulos2011
cases <- list()
for (spec in list(list(mods = NULL, method = "REML", test = "z"),
                  list(mods = ~ year, method = "ML", test = "t"))) {
  args <- list(yi = dat$yi, V = dat$vi, random = ~ 1 | district/school, data = dat,
               method = spec$method, test = spec$test)
  if (!is.null(spec$mods)) args$mods <- spec$mods
  fit <- fit_tight(args)
  cases[[length(cases) + 1]] <- list(
    method = spec$method, test = spec$test,
    mods = if (is.null(spec$mods)) NULL else deparse(spec$mods),
    expected = diagnostics(fit, args, dat$district, dat))
}
write_reference(list(
  source = SOURCE, dataset = "dat.konstantopoulos2011", yi = arr(dat$yi), vi = arr(dat$vi),
  levels = list(district = arr(as.character(dat$district)),
                school = arr(as.character(dat$school))),
  moderators = list(year = arr(dat$year)), cluster = "district", cases = cases),
  "mlviz_konstantopoulos2011.json")
}

## --- assink2016 ------------------------------------------------------------------
if (want("assink2016")) {
dat <- dat.assink2016
args <- list(yi = dat$yi, V = dat$vi, mods = ~ deltype, random = ~ 1 | study/esid,
             data = dat, method = "REML", test = "z")
fit <- fit_tight(args)
write_reference(list(
  source = SOURCE, dataset = "dat.assink2016", yi = arr(dat$yi), vi = arr(dat$vi),
  levels = list(study = arr(as.character(dat$study)), esid = arr(as.character(dat$esid))),
  moderators = list(deltype = arr(dat$deltype)), cluster = "study",
  cases = list(list(method = "REML", test = "z", mods = "~deltype",
                    expected = diagnostics(fit, args, dat$study, dat)))),
  "mlviz_assink2016.json")
}

## --- assink2016 with a CHE working V ---------------------------------------------
if (want("assink2016_che")) {
dat <- dat.assink2016
V <- vcalc(vi, cluster = study, obs = esid, rho = 0.6, data = dat)
args <- list(yi = dat$yi, V = V, random = ~ 1 | study/esid, data = dat,
             method = "REML", test = "z")
fit <- fit_tight(args)
nz <- which(V != 0, arr.ind = TRUE)
write_reference(list(
  source = SOURCE, dataset = "dat.assink2016 (CHE V: vcalc(vi, study, obs = esid, rho = 0.6))",
  yi = arr(dat$yi), vi = arr(dat$vi),
  V = list(i = arr(nz[, 1] - 1L), j = arr(nz[, 2] - 1L), x = arr(V[nz])),
  levels = list(study = arr(as.character(dat$study)), esid = arr(as.character(dat$esid))),
  cluster = "study",
  cases = list(list(method = "REML", test = "z", mods = NULL,
                    expected = diagnostics(fit, args, dat$study, dat)))),
  "mlviz_assink2016_che.json")
}

## --- berkey1998 (multivariate, UN) -------------------------------------------------
if (want("berkey1998")) {
dat <- dat.berkey1998
V <- bldiag(lapply(split(dat[, c("v1i", "v2i")], dat$trial), as.matrix))
args <- list(yi = dat$yi, V = V, mods = ~ outcome - 1, random = ~ outcome | trial,
             struct = "UN", data = dat, method = "REML", test = "z")
fit <- fit_tight(args)
write_reference(list(
  source = SOURCE, dataset = "dat.berkey1998", yi = arr(dat$yi),
  V = unname(lapply(seq_len(nrow(V)), function(i) arr(V[i, ]))),
  cluster_values = arr(as.character(dat$trial)), outcome = arr(dat$outcome),
  cluster = "trial",
  cases = list(list(method = "REML", test = "z", mods = "~outcome - 1", struct = "UN",
                    expected = diagnostics(fit, args, dat$trial, dat)))),
  "mlviz_berkey1998.json")
}

## --- crede2010 (three nested levels) ----------------------------------------------
if (want("crede2010")) {
d <- escalc(measure = "ZCOR", ri = ri, ni = ni, data = dat.crede2010)
d$esid <- as.character(ave(d$studyid, d$studyid, d$sampleid, FUN = seq_along))
d$sampleid <- as.character(d$sampleid)
d$sample <- paste(d$studyid, d$sampleid, sep = "/")
args <- list(yi = d$yi, V = d$vi, mods = ~ criterion, random = ~ 1 | studyid/sampleid/esid,
             data = d, method = "REML", test = "z")
fit <- fit_tight(args)
cases <- list()
for (cl in c("studyid", "sample")) {
  cases[[length(cases) + 1]] <- list(
    method = "REML", test = "z", mods = "~criterion", cluster = cl,
    expected = diagnostics(fit, args, d[[cl]], d, by_effect = FALSE))
}
write_reference(list(
  source = SOURCE, dataset = "dat.crede2010 (ZCOR)", yi = arr(d$yi), vi = arr(d$vi),
  levels = list(studyid = arr(as.character(d$studyid)), sampleid = arr(d$sampleid),
                esid = arr(d$esid)),
  moderators = list(criterion = arr(d$criterion)), cases = cases),
  "mlviz_crede2010.json")
}

## --- kalaian1996 (bivariate, HCS and CS) --------------------------------------------
if (want("kalaian1996")) {
d <- dat.kalaian1996
d <- d[!is.na(d$hrs), ]
V <- vcalc(vi, cluster = study, type = outcome, rho = 0.66, data = d)
cases <- list()
for (spec in list(list(struct = "HCS", method = "REML", test = "z"),
                  list(struct = "CS", method = "ML", test = "t"))) {
  args <- list(yi = d$yi, V = V, mods = ~ outcome - 1, random = ~ outcome | study,
               struct = spec$struct, data = d, method = spec$method, test = spec$test)
  fit <- fit_tight(args)
  cases[[length(cases) + 1]] <- list(
    method = spec$method, test = spec$test, mods = "~outcome - 1", struct = spec$struct,
    expected = diagnostics(fit, args, d$study, d, by_effect = FALSE))
}
write_reference(list(
  source = SOURCE, dataset = "dat.kalaian1996 (V: vcalc, type = outcome, rho = 0.66)",
  yi = arr(d$yi), V = unname(lapply(seq_len(nrow(V)), function(i) arr(as.matrix(V)[i, ]))),
  cluster_values = arr(as.character(d$study)), outcome = arr(d$outcome),
  cluster = "study", cases = cases),
  "mlviz_kalaian1996.json")
}
