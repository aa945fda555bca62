## Reference values for alliance_meta.selection_model: metafor's selmodel().
##
## Run from the repository root:  Rscript tests/reference/generate_selection.R
## Writes tests/reference/selmodel_<dataset>.json (see PROVENANCE_selection.md).
##
## Each case fits rma(yi, vi, [mods], method = M) with the tight rma controls, then
## selmodel(fit, type, alternative, [steps], [delta]) with every optimiser below
## at tight tolerances and a tight integrate() tolerance, and keeps the run with
## the highest log-likelihood.  The run with metafor's default controls is
## recorded beside it, to document how far short of the maximum it stops.

source("tests/reference/reference_common.R")
suppressPackageStartupMessages(library(minqa))

## integrate() inside the likelihood of the continuous weight functions
## (metafor's default is rel.tol = .Machine$double.eps^0.25 ~ 1.2e-4)
INT <- list(rel.tol = 1e-10, subdivisions = 1000L)

OPTIMISERS <- list(
  optim_BFGS = list(optimizer = "optim", optmethod = "BFGS", reltol = 1e-14, maxit = 1000),
  nlminb = list(optimizer = "nlminb", rel.tol = 1e-10, eval.max = 10000, iter.max = 10000),
  bobyqa = list(optimizer = "bobyqa", rhoend = 1e-10, maxfun = 100000),
  ## Nelder-Mead is slow with the integrals of the continuous weight functions:
  ## step functions only
  optim_NelderMead = list(optimizer = "optim", optmethod = "Nelder-Mead", reltol = 1e-14,
                          maxit = 50000)
)
## (nlminb at rel.tol = 1e-12 and ucminf stop with "false convergence" codes on
## these likelihoods; they were tried and dropped.)

num <- function(x) if (is.null(x)) NULL else arr(unname(as.vector(x)))
first <- function(x) if (is.null(x) || length(x) == 0) NULL else unname(as.vector(x))[1]

summarise_sel <- function(sel) {
  list(
    beta = num(sel$beta), se = num(sel$se), zval = num(sel$zval), pval = num(sel$pval),
    ci_lb = num(sel$ci.lb), ci_ub = num(sel$ci.ub),
    tau2 = first(sel$tau2), se_tau2 = first(sel$se.tau2),
    delta = num(sel$delta), se_delta = num(sel$se.delta),
    zval_delta = num(sel$zval.delta), pval_delta = num(sel$pval.delta),
    ci_lb_delta = num(sel$ci.lb.delta), ci_ub_delta = num(sel$ci.ub.delta),
    LRT = first(sel$LRT), LRT_df = first(sel$LRTdf), LRT_p = first(sel$LRTp),
    LRT_tau2 = first(sel$LRT.tau2),
    ll = first(sel$ll), ll0 = first(sel$ll0),
    k_intervals = if (is.data.frame(sel$ptable)) num(sel$ptable$k) else NULL,
    steps = num(sel$steps)
  )
}

RUN_LIMIT <- as.numeric(Sys.getenv("SELMODEL_RUN_LIMIT", "1800"))

## finished cases are cached (one RDS per case) so that an interrupted run resumes
CACHE <- Sys.getenv("SELMODEL_CACHE", file.path(tempdir(), "selmodel_cache"))
dir.create(CACHE, showWarnings = FALSE, recursive = TRUE)

## SELMODEL_SKIP="case1,case2" leaves those cases out (a helper process that only fills
## the cache for a parallel run); a data set with skipped cases is not written
SKIP <- strsplit(Sys.getenv("SELMODEL_SKIP", ""), ",")[[1]]

run_case <- function(name, yi, vi, X, method, type, alternative, steps = NULL, delta = NULL) {
  if (name %in% SKIP) return(NULL)
  key <- file.path(CACHE, paste0(digest_key(name, yi, vi, X, method, type, alternative, steps,
                                            delta), ".rds"))
  if (file.exists(key)) return(readRDS(key))
  out <- run_case_uncached(name, yi, vi, X, method, type, alternative, steps, delta)
  saveRDS(out, key)
  out
}

digest_key <- function(...) {
  txt <- paste(capture.output(dput(list(...))), collapse = "")
  paste0(list(...)[[1]], "_", sum(utf8ToInt(txt) * seq_along(utf8ToInt(txt))) %% 1e9)
}

run_case_uncached <- function(name, yi, vi, X, method, type, alternative, steps = NULL,
                              delta = NULL) {
  fit <- if (is.null(X)) {
    rma(yi, vi, method = method, control = CTL)
  } else {
    rma(yi, vi, mods = X, method = method, control = CTL)
  }
  args <- list(x = fit, type = type, alternative = alternative)
  if (!is.null(steps)) args$steps <- steps
  if (!is.null(delta)) args$delta <- delta
  runs <- list()
  best <- NULL
  best_name <- NULL
  onames <- names(OPTIMISERS)
  if (type != "stepfun") onames <- setdiff(onames, "optim_NelderMead")
  for (oname in onames) {
    a <- args
    a$control <- c(OPTIMISERS[[oname]], list(intCtrl = INT))
    t0 <- proc.time()[[3]]
    ## at most RUN_LIMIT seconds per optimiser run (recorded as an error beyond)
    setTimeLimit(elapsed = RUN_LIMIT, transient = TRUE)
    sel <- tryCatch(suppressWarnings(do.call(selmodel, a)), error = function(e) e)
    setTimeLimit(elapsed = Inf)
    el <- proc.time()[[3]] - t0
    if (inherits(sel, "error")) {
      runs[[oname]] <- list(ll = NULL, error = conditionMessage(sel), seconds = el)
      next
    }
    runs[[oname]] <- list(ll = sel$ll, beta = num(sel$beta), tau2 = sel$tau2,
                          delta = num(sel$delta), seconds = el)
    if (is.null(best) || sel$ll > best$ll) {
      best <- sel
      best_name <- oname
    }
  }
  dflt <- tryCatch(suppressWarnings(do.call(selmodel, args)), error = function(e) e)
  default <- if (inherits(dflt, "error")) list(error = conditionMessage(dflt)) else
    list(ll = dflt$ll, beta = num(dflt$beta), tau2 = dflt$tau2, delta = num(dflt$delta),
         se = num(dflt$se), se_delta = num(dflt$se.delta), LRT = dflt$LRT)
  message(sprintf("%-40s best %-16s ll = %.10f (default ll = %s)", name, best_name, best$ll,
                  if (is.null(default$ll)) "error" else sprintf("%.10f", default$ll)))
  list(
    name = name,
    call = list(method = method, type = type, alternative = alternative,
                steps = if (is.null(steps)) NULL else arr(steps),
                delta = if (is.null(delta)) NULL else arr(delta),
                mods = !is.null(X)),
    yi = arr(fit$yi), vi = arr(fit$vi),
    X = lapply(seq_len(nrow(fit$X)), function(i) arr(fit$X[i, ])),
    coef_names = arr(colnames(fit$X)),
    input_fit = list(beta = num(fit$beta), tau2 = fit$tau2, ll_ML = if (method == "REML") NULL
                     else as.numeric(logLik(fit))),
    best_optimiser = best_name,
    expected = summarise_sel(best),
    optimiser_runs = runs,
    default_controls = default
  )
}

## SELMODEL_SETS="bcg,hahn2001" runs only those data sets (default: all)
SETS <- strsplit(Sys.getenv("SELMODEL_SETS", ""), ",")[[1]]
want <- function(dataset) length(SETS) == 0 || dataset %in% SETS

write_set <- function(dataset, cases) {
  if (any(vapply(cases, is.null, logical(1)))) return(invisible(NULL))
  write_reference(list(source = SOURCE, dataset = dataset,
                       integrate = INT, optimisers = OPTIMISERS, cases = cases),
                  paste0("selmodel_", dataset, ".json"))
}

## ---------------------------------------------------------------------------
## dat.hackshaw1998: log odds ratios, k = 37 (metafor's stepfun example)
if (want("hackshaw1998")) {
  d <- dat.hackshaw1998
  cases <- list(
    run_case("stepfun_greater_4steps_ML", d$yi, d$vi, NULL, "ML", "stepfun", "greater",
             steps = c(.025, .10, .50, 1)),
    run_case("stepfun_twosided_05_ML", d$yi, d$vi, NULL, "ML", "stepfun", "two.sided",
             steps = c(.05)),
    run_case("beta_greater_ML", d$yi, d$vi, NULL, "ML", "beta", "greater"),
    run_case("halfnorm_greater_ML", d$yi, d$vi, NULL, "ML", "halfnorm", "greater"),
    run_case("negexp_greater_ML", d$yi, d$vi, NULL, "ML", "negexp", "greater"),
    run_case("logistic_greater_ML", d$yi, d$vi, NULL, "ML", "logistic", "greater"),
    run_case("power_greater_ML", d$yi, d$vi, NULL, "ML", "power", "greater"),
    run_case("halfnorm_twosided_REML", d$yi, d$vi, NULL, "REML", "halfnorm", "two.sided"),
    run_case("negexp_greater_step025_REML", d$yi, d$vi, NULL, "REML", "negexp", "greater",
             steps = c(.025))
  )
  write_set("hackshaw1998", cases)
}

## ---------------------------------------------------------------------------
## dat.bangertdrowns2004: standardised mean differences, k = 48 (46 with wic)
if (want("bangertdrowns2004")) {
  d <- dat.bangertdrowns2004
  dw <- d[!is.na(d$wic), ]
  Xw <- cbind(wic = dw$wic)
  dl <- d[!is.na(d$length), ]
  Xl <- cbind(length = dl$length)
  cases <- list(
    run_case("stepfun_greater_2steps_REML", d$yi, d$vi, NULL, "REML", "stepfun", "greater",
             steps = c(.025, .50)),
    run_case("beta_twosided_ML", d$yi, d$vi, NULL, "ML", "beta", "two.sided"),
    run_case("stepfun_greater_025_mods_wic_REML", dw$yi, dw$vi, Xw, "REML", "stepfun",
             "greater", steps = c(.025)),
    run_case("halfnorm_greater_mods_length_ML", dl$yi, dl$vi, Xl, "ML", "halfnorm", "greater"),
    run_case("power_twosided_REML", d$yi, d$vi, NULL, "REML", "power", "two.sided"),
    run_case("logistic_twosided_mods_wic_ML", dw$yi, dw$vi, Xw, "ML", "logistic", "two.sided"),
    run_case("beta_greater_mods_length_REML", dl$yi, dl$vi, Xl, "REML", "beta", "greater")
  )
  write_set("bangertdrowns2004", cases)
}

## ---------------------------------------------------------------------------
## dat.molloy2014: Fisher-z correlations, k = 16
if (want("molloy2014")) {
  d <- escalc(measure = "ZCOR", ri = ri, ni = ni, data = dat.molloy2014)
  cases <- list(
    run_case("stepfun_greater_025_REML", d$yi, d$vi, NULL, "REML", "stepfun", "greater",
             steps = c(.025)),
    run_case("negexp_greater_ML", d$yi, d$vi, NULL, "ML", "negexp", "greater"),
    run_case("halfnorm_twosided_ML", d$yi, d$vi, NULL, "ML", "halfnorm", "two.sided"),
    run_case("beta_greater_REML", d$yi, d$vi, NULL, "REML", "beta", "greater")
  )
  write_set("molloy2014", cases)
}

## ---------------------------------------------------------------------------
## dat.baskerville2012: standardised mean differences, k = 23 (metafor's beta example)
if (want("baskerville2012")) {
  d <- dat.baskerville2012
  Xb <- cbind(blind = d$blind)
  cases <- list(
    run_case("beta_greater_ML", d$smd, d$se^2, NULL, "ML", "beta", "greater"),
    run_case("beta_greater_mods_blind_ML", d$smd, d$se^2, Xb, "ML", "beta", "greater"),
    run_case("stepfun_greater_025_ML", d$smd, d$se^2, NULL, "ML", "stepfun", "greater",
             steps = c(.025)),
    run_case("power_greater_REML", d$smd, d$se^2, NULL, "REML", "power", "greater"),
    run_case("stepfun_twosided_3steps_mods_blind_REML", d$smd, d$se^2, Xb, "REML", "stepfun",
             "two.sided", steps = c(.025, .05, .5))
  )
  write_set("baskerville2012", cases)
}

## ---------------------------------------------------------------------------
## dat.bcg: log risk ratios, k = 13 (vaccine effects are negative: alternative "less")
if (want("bcg")) {
  d <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
  Xa <- cbind(ablat = d$ablat)
  cases <- list(
    run_case("stepfun_less_025_REML", d$yi, d$vi, NULL, "REML", "stepfun", "less",
             steps = c(.025)),
    run_case("halfnorm_less_mods_ablat_ML", d$yi, d$vi, Xa, "ML", "halfnorm", "less"),
    run_case("logistic_less_REML", d$yi, d$vi, NULL, "REML", "logistic", "less"),
    run_case("negexp_twosided_mods_ablat_REML", d$yi, d$vi, Xa, "REML", "negexp", "two.sided")
  )
  write_set("bcg", cases)
}

## ---------------------------------------------------------------------------
## dat.hahn2001: log odds ratios, equal-effects model, alternative "less"
## (metafor's example for the Preston et al. weight functions; 0/0 studies dropped)
if (want("hahn2001")) {
  d <- escalc(measure = "OR", ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = dat.hahn2001,
              drop00 = TRUE)
  d <- d[!is.na(d$yi), ]
  cases <- list(
    run_case("halfnorm_less_EE", d$yi, d$vi, NULL, "EE", "halfnorm", "less"),
    run_case("negexp_less_EE", d$yi, d$vi, NULL, "EE", "negexp", "less"),
    run_case("logistic_less_EE", d$yi, d$vi, NULL, "EE", "logistic", "less"),
    run_case("power_less_EE", d$yi, d$vi, NULL, "EE", "power", "less"),
    run_case("beta_less_EE", d$yi, d$vi, NULL, "EE", "beta", "less")
  )
  write_set("hahn2001", cases)
}

## ---------------------------------------------------------------------------
## dat.cohen1981: Fisher-z correlations, k = 20; fixed selection weights
## (Vevea & Woods, 2005, moderate one-tailed selection, as in metafor's example)
if (want("cohen1981")) {
  d <- escalc(measure = "ZCOR", ri = ri, ni = ni, data = dat.cohen1981)
  vw_steps <- c(0.005, 0.01, 0.05, 0.10, 0.25, 0.35, 0.50, 0.65, 0.75, 0.90, 0.95, 0.99, 0.995, 1)
  vw_mod1 <- c(1, 0.99, 0.95, 0.80, 0.75, 0.65, 0.60, 0.55, 0.50, 0.50, 0.50, 0.50, 0.50, 0.50)
  cases <- list(
    run_case("stepfun_greater_fixed_vevea_woods_mod1_ML", d$yi, d$vi, NULL, "ML", "stepfun",
             "greater", steps = vw_steps, delta = vw_mod1),
    run_case("halfnorm_greater_fixed_delta2_ML", d$yi, d$vi, NULL, "ML", "halfnorm", "greater",
             delta = 2),
    run_case("stepfun_greater_partly_fixed_REML", d$yi, d$vi, NULL, "REML", "stepfun",
             "greater", steps = c(.025, .5), delta = c(1, NA, 0.5))
  )
  write_set("cohen1981", cases)
}
