## Validation sweep (helper "sweep"): metafor 3.8.1 / clubSandwich 0.5.8 on data sets
## and options the other reference files do not use.  Writes tests/reference/sweep_*.json.
## Run from the repository root:  Rscript tests/reference/generate_sweep.R
## See PROVENANCE.md (section "sweep").

source("tests/reference/reference_common.R")
suppressPackageStartupMessages(library(clubSandwich))

CTL <- list(threshold = 1e-12, tol = 1e-12, maxiter = 10000)
MVCTL <- list(rel.tol = 1e-12, iter.max = 10000, eval.max = 10000)
METHODS <- c("EE", "DL", "HE", "HS", "HSk", "SJ", "ML", "REML", "EB", "PM", "PMM")
arr <- function(x) if (is.null(x)) NULL else I(as.vector(x))  # NULL-tolerant
PARTS <- strsplit(Sys.getenv("SWEEP_PARTS", "pool,escalc,metareg,diag,subgroup,mv"), ",")[[1]]
num <- function(x) if (is.null(x) || length(x) == 0) NA else as.numeric(x)

fit_uni <- function(yi, vi, ...) {
  msg <- NULL
  fit <- withCallingHandlers(
    tryCatch(rma(yi, vi, control = CTL, ...), error = function(e) {
      tryCatch(rma(yi, vi, control = c(CTL, list(stepadj = 0.5)), ...),
               error = function(e2) e2)
    }),
    warning = function(w) { msg <<- c(msg, conditionMessage(w)); invokeRestart("muffleWarning") })
  list(fit = fit, warning = if (is.null(msg)) NA else paste(msg, collapse = " | "))
}

## ---------------------------------------------------------------- effect sizes
es <- list()
add <- function(name, x, transf = "none", raw = NULL, measure = attr(x$yi, "measure")) {
  ok <- !is.na(x$yi) & !is.na(x$vi)
  es[[name]] <<- list(name = name, measure = measure, transf = transf,
                      yi = arr(x$yi[ok]), vi = arr(x$vi[ok]), raw = raw, data = x[ok, , drop = FALSE])
}
d <- dat.linde2005
add("linde2005_RR", escalc("RR", ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = d), "exp",
    list(measure = "RR", ai = arr(d$ai), n1i = arr(d$n1i), ci = arr(d$ci), n2i = arr(d$n2i)))
d <- dat.collins1985a
add("collins1985a_OR", escalc("OR", ai = b.xti, n1i = nti, ci = b.xci, n2i = nci, data = d), "exp",
    list(measure = "OR", ai = arr(d$b.xti), n1i = arr(d$nti), ci = arr(d$b.xci), n2i = arr(d$nci)))
d <- dat.hine1989
add("hine1989_RD", escalc("RD", ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = d), "none",
    list(measure = "RD", ai = arr(d$ai), n1i = arr(d$n1i), ci = arr(d$ci), n2i = arr(d$n2i)))
d <- dat.laopaiboon2015
add("laopaiboon2015_RR", escalc("RR", ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = d), "exp",
    list(measure = "RR", ai = arr(d$ai), n1i = arr(d$n1i), ci = arr(d$ci), n2i = arr(d$n2i)))
d <- dat.dorn2007
add("dorn2007_RR", escalc("RR", ai = x.a, n1i = n.a, ci = x.p, n2i = n.p, data = d), "exp",
    list(measure = "RR", ai = arr(d$x.a), n1i = arr(d$n.a), ci = arr(d$x.p), n2i = arr(d$n.p)))
d <- dat.nielweise2008
add("nielweise2008_IRR", escalc("IRR", x1i = x1i, t1i = t1i, x2i = x2i, t2i = t2i, data = d), "exp",
    list(measure = "IRR", x1i = arr(d$x1i), t1i = arr(d$t1i), x2i = arr(d$x2i), t2i = arr(d$t2i)))
d <- dat.hart1999
add("hart1999_IRD", escalc("IRD", x1i = x1i, t1i = t1i, x2i = x2i, t2i = t2i, data = d), "none",
    list(measure = "IRD", x1i = arr(d$x1i), t1i = arr(d$t1i), x2i = arr(d$x2i), t2i = arr(d$t2i)))
d <- dat.curtis1998
add("curtis1998_ROM", escalc("ROM", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i,
    n2i = n2i, data = d), "exp",
    list(measure = "ROM", m1i = arr(d$m1i), sd1i = arr(d$sd1i), n1i = arr(d$n1i),
         m2i = arr(d$m2i), sd2i = arr(d$sd2i), n2i = arr(d$n2i)))
d <- dat.normand1999
add("normand1999_MD", escalc("MD", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i,
    n2i = n2i, data = d), "none",
    list(measure = "MD", m1i = arr(d$m1i), sd1i = arr(d$sd1i), n1i = arr(d$n1i),
         m2i = arr(d$m2i), sd2i = arr(d$sd2i), n2i = arr(d$n2i)))
d <- dat.normand1999
add("normand1999_SMDH", escalc("SMDH", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i,
    n2i = n2i, data = d), "none",
    list(measure = "SMDH", m1i = arr(d$m1i), sd1i = arr(d$sd1i), n1i = arr(d$n1i),
         m2i = arr(d$m2i), sd2i = arr(d$sd2i), n2i = arr(d$n2i)))
d <- dat.craft2003[dat.craft2003$var1 == "acog" & dat.craft2003$var2 == "perf", ]
add("craft2003_ZCOR", escalc("ZCOR", ri = ri, ni = ni, data = d), "ztor",
    list(measure = "ZCOR", ri = arr(d$ri), ni = arr(d$ni)))
add("craft2003_COR", escalc("COR", ri = ri, ni = ni, data = d), "none",
    list(measure = "COR", ri = arr(d$ri), ni = arr(d$ni)))
d <- dat.obrien2003
add("obrien2003_PLO", escalc("PLO", xi = cases, ni = total, data = d), "ilogit",
    list(measure = "PLO", xi = arr(d$cases), ni = arr(d$total)))
d <- dat.pagliaro1992[dat.pagliaro1992$trt == "sclerotherapy", ]
add("pagliaro1992_PAS", escalc("PAS", xi = xi, ni = ni, data = d), "iarcsin",
    list(measure = "PAS", xi = arr(d$xi), ni = arr(d$ni)))
d <- dat.egger2001
add("egger2001_PETO", escalc("PETO", ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = d), "exp",
    list(measure = "PETO", ai = arr(d$ai), n1i = arr(d$n1i), ci = arr(d$ci), n2i = arr(d$n2i)))
d <- dat.li2007
add("li2007_OR", escalc("OR", ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = d), "exp",
    list(measure = "OR", ai = arr(d$ai), n1i = arr(d$n1i), ci = arr(d$ci), n2i = arr(d$n2i)))
d <- dat.anand1999
add("anand1999_OR", escalc("OR", ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = d), "exp",
    list(measure = "OR", ai = arr(d$ai), n1i = arr(d$n1i), ci = arr(d$ci), n2i = arr(d$n2i)))
d <- dat.lehmann2018
add("lehmann2018_SMD", d[, c("yi", "vi", "Year", "Preregistered", "Design", "Short_Title")], "none",
    NULL, "SMD")
d <- dat.lopez2019
x <- data.frame(yi = d$diff, vi = d$se^2, d[, c("study", "group", "cog", "ba", "sessions", "tailored")])
add("lopez2019_MD", x, "none", NULL, "GEN")
d <- dat.riley2003[dat.riley2003$outcome == "OS", ]
add("riley2003_OS", d[, c("yi", "vi")], "exp", NULL, "GEN")

## simulated edge cases (GEN)
sim <- list(
  k2_close = list(yi = c(0.10, 0.12), vi = c(0.01, 0.02)),
  k2_far = list(yi = c(-0.5, 1.2), vi = c(0.04, 0.05)),
  k3_hetero = list(yi = c(0.1, 0.9, -0.6), vi = c(0.02, 0.03, 0.025)),
  small_vi = list(yi = c(0.31, 0.30, 0.33, 0.29, 0.35), vi = c(1e-6, 2e-6, 5e-7, 3e-6, 1e-6)),
  huge_vi = list(yi = c(10, -40, 25, 60, -5, 3), vi = c(1e4, 5e4, 2e4, 8e4, 3e4, 1e5)),
  boundary = list(yi = c(0.2, 0.25, 0.22, 0.18, 0.21, 0.24), vi = c(0.05, 0.04, 0.06, 0.05, 0.03, 0.07)),
  very_hetero = list(yi = c(-3, 2.5, 0.1, 4, -1.5, 6, 0.7), vi = c(0.01, 0.02, 0.015, 0.03, 0.01, 0.02, 0.05)),
  dominant = list(yi = c(0.5, 0.1, -0.2, 0.8, 0.3, 0.45), vi = c(1e-4, 0.2, 0.3, 0.25, 0.15, 0.4)),
  equal_vi = list(yi = c(0.1, 0.4, -0.2, 0.6, 0.3, 0.0, 0.9), vi = rep(0.04, 7)),
  mixed_scale = list(yi = c(0.2, 0.5, 0.35, -0.1, 0.8, 0.25, 0.4, 0.6),
                     vi = c(1e-3, 0.5, 2e-3, 1.5, 0.01, 4, 0.3, 1e-4))
)
for (n in names(sim)) add(paste0("sim_", n), data.frame(yi = sim[[n]]$yi, vi = sim[[n]]$vi), "none",
                          NULL, "GEN")

TRANSF <- list(none = NULL, exp = exp, ztor = transf.ztor, ilogit = transf.ilogit,
               iarcsin = transf.iarcsin)

## ---------------------------------------------------------------- pooled fits
unifields <- function(fit) {
  list(estimate = num(fit$beta), se = num(fit$se), statistic = num(fit$zval),
       p_value = num(fit$pval), ci_lb = num(fit$ci.lb), ci_ub = num(fit$ci.ub),
       tau2 = num(fit$tau2), se_tau2 = num(fit$se.tau2), Q = num(fit$QE), Q_p = num(fit$QEp),
       I2 = num(fit$I2), H2 = num(fit$H2), df = num(fit$ddf), k = fit$k)
}
pool_cases <- list()
if ("pool" %in% PARTS) for (e in es) {
  cases <- list()
  for (m in METHODS) for (tt in c("z", "t", "knha")) for (lv in c(0.95, 0.90)) {
    r <- fit_uni(e$yi, e$vi, method = m, test = tt, level = lv * 100)
    fit <- r$fit
    if (inherits(fit, "error")) {
      cases[[length(cases) + 1]] <- list(method = m, test = tt, level = lv, error = conditionMessage(fit))
      next
    }
    ex <- unifields(fit)
    ex$logLik <- num(logLik(fit))
    p <- predict(fit)
    ex$pi_lb <- num(p$pi.lb); ex$pi_ub <- num(p$pi.ub)
    if (e$transf != "none") {
      pt <- predict(fit, transf = TRANSF[[e$transf]])
      ex$transf <- list(pred = num(pt$pred), ci_lb = num(pt$ci.lb), ci_ub = num(pt$ci.ub),
                        pi_lb = num(pt$pi.lb), pi_ub = num(pt$pi.ub))
    }
    if (m != "EE" && tt == "z") {
      ci <- tryCatch(confint(fit, control = list(tol = 1e-12)), error = function(x) NULL)
      if (!is.null(ci)) {
        ex$tau2_ci <- arr(ci$random[1, 2:3]); ex$I2_ci <- arr(ci$random[3, 2:3])
        ex$H2_ci <- arr(ci$random[4, 2:3])
      }
    }
    cases[[length(cases) + 1]] <- list(method = m, test = tt, level = lv, warning = r$warning,
                                       expected = ex)
  }
  pool_cases[[e$name]] <- list(name = e$name, measure = e$measure, transf = e$transf,
                               yi = e$yi, vi = e$vi, raw = e$raw, cases = cases)
}
if ("pool" %in% PARTS)
  write_reference(list(source = SOURCE, control = CTL, datasets = unname(pool_cases)), "sweep_pool.json")

## ---------------------------------------------------------------- escalc vtype / add / to
if ("escalc" %in% PARTS) {
esc <- list()
esc_case <- function(label, measure, args, ...) {
  message("escalc ", label, " ", measure)
  opts <- list(...)
  x <- tryCatch(suppressWarnings(do.call(escalc, c(list(measure = measure), args, opts))),
                error = function(e) e)
  if (inherits(x, "error")) {  # metafor refuses: the library should refuse too
    esc[[length(esc) + 1]] <<- list(label = label, measure = measure, inputs = lapply(args, arr),
      options = opts, error = conditionMessage(x))
    return(invisible())
  }
  esc[[length(esc) + 1]] <<- list(label = label, measure = measure,
    inputs = lapply(args, arr), options = opts, yi = arr(x$yi), vi = arr(x$vi))
}
d <- dat.collins1985a
tab <- list(ai = d$b.xti, n1i = d$nti, ci = d$b.xci, n2i = d$nci)
for (m in c("OR", "RR", "RD", "PETO", "AS", "YUQ", "YUY", "RTET", "PHI", "OR2DN", "OR2DL"))
  esc_case("collins1985a", m, tab)
for (a in list(list(add = 0.5, to = "all"), list(add = 1, to = "if0all"), list(add = 0.1, to = "all"),
               list(add = 0, to = "none"), list(add = 0.5, to = "only0", drop00 = TRUE)))
  do.call(esc_case, c(list("collins1985a zero cells", "OR", tab), a))
esc_case("collins1985a", "RR", tab, add = 0.5, to = "if0all")
esc_case("collins1985a", "RD", tab, vtype = "AV")
esc_case("collins1985a", "RD", tab, vtype = "UB")
esc_case("collins1985a", "OR", tab, vtype = "AV")  # not all measures accept AV? (OR: no)
d <- dat.dorn2007
tab <- list(ai = d$x.a, n1i = d$n.a, ci = d$x.p, n2i = d$n.p)
for (m in c("OR", "RR", "RD", "AS", "PETO")) esc_case("dorn2007", m, tab)
esc_case("dorn2007", "RR", tab, vtype = "AV")
d <- dat.normand1999
mn <- list(m1i = d$m1i, sd1i = d$sd1i, n1i = d$n1i, m2i = d$m2i, sd2i = d$sd2i, n2i = d$n2i)
for (m in c("MD", "SMD", "SMDH", "ROM", "CVR", "VR", "SMD1")) esc_case("normand1999", m, mn)
for (v in c("LS2", "UB", "AV", "LS")) esc_case("normand1999", "SMD", mn, vtype = v)
esc_case("normand1999", "MD", mn, vtype = "HO")
esc_case("normand1999", "ROM", mn, vtype = "AV")
esc_case("normand1999", "ROM", mn, vtype = "AVHO")
esc_case("normand1999", "SMDH", mn, vtype = "AV")  # metafor 3.8.1 fails internally (vi missing)
d <- dat.craft2003
rr <- list(ri = d$ri, ni = d$ni)
for (m in c("COR", "UCOR", "ZCOR")) esc_case("craft2003", m, rr)
esc_case("craft2003", "COR", rr, vtype = "UB")
esc_case("craft2003", "COR", rr, vtype = "AV")
esc_case("craft2003", "UCOR", rr, vtype = "UB")
d <- dat.obrien2003
pp <- list(xi = d$cases, ni = d$total)
for (m in c("PR", "PLN", "PLO", "PAS", "PFT")) esc_case("obrien2003", m, pp)
esc_case("obrien2003", "PR", pp, vtype = "AV")
esc_case("obrien2003", "PLO", pp, vtype = "AV")
d <- dat.hart1999
ir <- list(x1i = d$x1i, t1i = d$t1i, x2i = d$x2i, t2i = d$t2i)
for (m in c("IRR", "IRD", "IRSD")) esc_case("hart1999", m, ir)
esc_case("hart1999", "IRD", ir, vtype = "AV")
ir1 <- list(xi = d$x1i, ti = d$t1i)
for (m in c("IR", "IRLN", "IRS", "IRFT")) esc_case("hart1999 group 1", m, ir1)
d <- dat.curtis1998
m1 <- list(mi = d$m1i, sdi = d$sd1i, ni = d$n1i)
for (m in c("MN", "MNLN", "CVLN", "SDLN")) esc_case("curtis1998 group 1", m, m1)
set.seed(8)
pre <- list(m1i = rnorm(12, 10, 2), m2i = rnorm(12, 9, 2), sd1i = runif(12, 1, 3),
            sd2i = runif(12, 1, 3), ni = sample(10:60, 12), ri = runif(12, 0.1, 0.9))
for (m in c("MC", "SMCC", "SMCR", "SMCRH", "ROMC", "CVRC", "VRC")) esc_case("simulated pre-post", m, pre)
write_reference(list(source = SOURCE, cases = esc), "sweep_escalc.json")

}
## ---------------------------------------------------------------- meta-regression
if ("metareg" %in% PARTS) {
mr_cases <- list()
mr_data <- list()
mr <- function(label, dat, formula, methods = c("EE", "DL", "HE", "SJ", "ML", "REML", "EB", "PM"),
               newmods = NULL) {
  mr_data[[label]] <<- dat
  for (m in methods) for (tt in c("z", "knha", "t")) {
    r <- fit_uni(dat$yi, dat$vi, mods = as.formula(formula), data = dat, method = m, test = tt)
    fit <- r$fit
    if (inherits(fit, "error")) {
      mr_cases[[length(mr_cases) + 1]] <<- list(label = label, formula = formula, method = m,
                                                test = tt, error = conditionMessage(fit)); next
    }
    ex <- list(coef_names = arr(rownames(fit$beta)), coef = arr(fit$beta), se = arr(fit$se),
               statistic = arr(fit$zval), p_value = arr(fit$pval), ci_lb = arr(fit$ci.lb),
               ci_ub = arr(fit$ci.ub), tau2 = num(fit$tau2), tau2_se = num(fit$se.tau2),
               QE = num(fit$QE), QE_p = num(fit$QEp), QM = num(fit$QM), QM_p = num(fit$QMp),
               QM_df = num(fit$QMdf[1]), df = num(fit$ddf[1]),
               I2 = num(fit$I2), H2 = num(fit$H2), R2 = num(fit$R2), logLik = num(logLik(fit)),
               vcov = unname(vcov(fit)))
    if (!is.null(newmods) && m %in% c("REML", "DL")) {
      p <- predict(fit, newmods = newmods)
      ex$predict <- list(newmods = newmods, pred = arr(p$pred), se = arr(p$se), ci_lb = arr(p$ci.lb),
                         ci_ub = arr(p$ci.ub), pi_lb = arr(p$pi.lb), pi_ub = arr(p$pi.ub))
    }
    mr_cases[[length(mr_cases) + 1]] <<- list(label = label, formula = formula, method = m,
      test = tt, warning = r$warning, expected = ex)
  }
}
d <- dat.linde2005; d <- escalc("RR", ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = d)
d <- d[!is.na(d$baseline), c("yi", "vi", "baseline", "major", "duration")]
d$yi <- as.numeric(d$yi); d$vi <- as.numeric(d$vi)
mr("linde2005 RR", d, "~ baseline * factor(major)")
mr("linde2005 RR", d, "~ factor(major) - 1")
mr("linde2005 RR", d, "~ baseline + duration", newmods = rbind(c(20, 6), c(30, 8)))
d <- dat.curtis1998; d <- escalc("ROM", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i,
  n2i = n2i, data = d)[, c("yi", "vi", "fungrp", "time", "method")]
d$yi <- as.numeric(d$yi); d$vi <- as.numeric(d$vi)
mr("curtis1998 ROM", d, "~ factor(fungrp) - 1")
mr("curtis1998 ROM", d, "~ time * method")
mr("curtis1998 ROM", d, "~ log(time) + factor(fungrp)")
x <- es$lopez2019_MD$data
mr("lopez2019", x, "~ cog * ba")
mr("lopez2019", x, "~ sessions + factor(tailored)", newmods = rbind(c(4, 0), c(10, 1)))
d <- dat.dorn2007; d <- escalc("RR", ai = x.a, n1i = n.a, ci = x.p, n2i = n.p, data = d)
d <- d[, c("yi", "vi", "jadad", "days", "ibs.crit")]; d$yi <- as.numeric(d$yi); d$vi <- as.numeric(d$vi)
mr("dorn2007 RR", d, "~ jadad + days")
mr("dorn2007 RR", d, "~ ibs.crit")
x <- es$obrien2003_PLO$data[, c("yi", "vi", "bmi", "grp", "ch")]
x$yi <- as.numeric(x$yi); x$vi <- as.numeric(x$vi)
mr("obrien2003 PLO", x, "~ bmi + I(bmi^2)")
mr("obrien2003 PLO", x, "~ ch:bmi")
x <- dat.raudenbush1985
mr("raudenbush1985", x[, c("yi", "vi", "weeks", "setting", "tester")], "~ setting * tester")
mr("raudenbush1985", x[, c("yi", "vi", "weeks", "setting", "tester")], "~ poly(weeks, 2, raw = TRUE)")
write_reference(list(source = SOURCE, control = CTL, data = mr_data, cases = mr_cases),
                "sweep_metareg.json")

}
## ---------------------------------------------------------------- diagnostics
if ("diag" %in% PARTS) {
diag_sets <- list()
run_diag <- function(e, method) {
  e$yi <- as.numeric(e$yi); e$vi <- as.numeric(e$vi)
  fit <- rma(e$yi, e$vi, method = method, control = CTL)
  l1 <- leave1out(fit)
  inf <- influence(fit)
  cu <- cumul(fit)
  ## trimfill() does not pass the fit's control on to its internal rma() calls: pass it
  tf <- trimfill(fit, control = CTL)
  tfR0 <- trimfill(fit, estimator = "R0", control = CTL)
  rk <- ranktest(fit)
  rg <- regtest(fit)
  rglm <- regtest(fit, model = "lm")
  fr <- fsn(e$yi, e$vi); fo <- fsn(e$yi, e$vi, type = "Orwin"); fb <- fsn(e$yi, e$vi, type = "Rosenberg")
  fo2 <- fsn(e$yi, e$vi, type = "Orwin", target = 0.05)
  pdf(NULL); bj <- baujat(fit); dev.off()
  list(name = e$name, method = method, yi = e$yi, vi = e$vi,
    leave1out = list(estimate = arr(l1$estimate), se = arr(l1$se), statistic = arr(l1$zval),
      p_value = arr(l1$pval), ci_lb = arr(l1$ci.lb), ci_ub = arr(l1$ci.ub), Q = arr(l1$Q),
      Q_p = arr(l1$Qp), tau2 = arr(l1$tau2), I2 = arr(l1$I2), H2 = arr(l1$H2)),
    influence = list(rstudent = arr(inf$inf$rstudent), dffits = arr(inf$inf$dffits),
      cook_d = arr(inf$inf$cook.d), cov_r = arr(inf$inf$cov.r), tau2_del = arr(inf$inf$tau2.del),
      QE_del = arr(inf$inf$QE.del), hat = arr(inf$inf$hat), weight = arr(inf$inf$weight),
      dfbetas = arr(inf$dfbs[[1]]), is_infl = arr(inf$is.infl)),
    cumul = list(estimate = arr(cu$estimate), se = arr(cu$se), ci_lb = arr(cu$ci.lb),
      ci_ub = arr(cu$ci.ub), Q = arr(cu$Q), tau2 = arr(cu$tau2), I2 = arr(cu$I2), H2 = arr(cu$H2),
      p_value = arr(cu$pval)),
    trimfill = list(k0 = tf$k0, se_k0 = num(tf$se.k0), side = tf$side, estimate = num(tf$beta),
      se = num(tf$se), tau2 = num(tf$tau2), ci_lb = num(tf$ci.lb), ci_ub = num(tf$ci.ub),
      p_k0 = num(tf$p.k0)),
    trimfill_R0 = list(k0 = tfR0$k0, se_k0 = num(tfR0$se.k0), side = tfR0$side,
      estimate = num(tfR0$beta), se = num(tfR0$se), tau2 = num(tfR0$tau2), p_k0 = num(tfR0$p.k0)),
    ranktest = list(tau = num(rk$tau), p_value = num(rk$pval)),
    regtest = list(statistic = num(rg$zval), p_value = num(rg$pval), df = num(rg$dfs),
      est = num(rg$est), ci_lb = num(rg$ci.lb), ci_ub = num(rg$ci.ub)),
    regtest_lm = list(statistic = num(rglm$zval), p_value = num(rglm$pval), df = num(rglm$dfs)),
    fsn = list(rosenthal = num(fr$fsnum), rosenthal_p = num(fr$pval), orwin = num(fo$fsnum),
      orwin_target = num(fo$target), orwin_05 = num(fo2$fsnum), rosenberg = num(fb$fsnum),
      rosenberg_p = num(fb$pval)),
    baujat = list(x = arr(bj$x), y = arr(bj$y)))
}
for (n in c("linde2005_RR", "dorn2007_RR", "laopaiboon2015_RR", "craft2003_ZCOR", "lehmann2018_SMD",
            "anand1999_OR", "sim_dominant", "sim_very_hetero"))
  for (m in c("REML", "DL", "EE")) diag_sets[[length(diag_sets) + 1]] <- run_diag(es[[n]], m)
write_reference(list(source = SOURCE, control = CTL, cases = diag_sets), "sweep_diagnostics.json")

}
## ---------------------------------------------------------------- subgroups
if ("subgroup" %in% PARTS) {
sg <- list()
subgroup <- function(label, dat, by, method) {
  g <- as.character(dat[[by]]); lv <- sort(unique(g))
  groups <- list()
  est <- c(); se <- c()
  for (l in lv) {
    s <- dat[g == l, ]
    f <- rma(s$yi, s$vi, method = method, control = CTL)
    groups[[l]] <- list(k = f$k, estimate = num(f$beta), se = num(f$se), tau2 = num(f$tau2),
                        Q = num(f$QE), ci_lb = num(f$ci.lb), ci_ub = num(f$ci.ub))
    est <- c(est, f$beta); se <- c(se, f$se)
  }
  b <- rma(est, sei = se, method = "EE")
  com <- rma(dat$yi, dat$vi, mods = ~ factor(g), method = method, control = CTL)
  sg[[length(sg) + 1]] <<- list(label = label, by = by, method = method, yi = arr(dat$yi),
    vi = arr(dat$vi), groups_of = arr(g), groups = groups, Q_between = num(b$QE),
    Q_between_p = num(b$QEp), common = list(QM = num(com$QM), QM_p = num(com$QMp),
    tau2 = num(com$tau2), QE = num(com$QE), QE_p = num(com$QEp)))
}
d <- es$linde2005_RR$data
for (m in c("REML", "DL", "EE", "PM")) subgroup("linde2005", d, "major", m)
d <- es$dorn2007_RR$data
for (m in c("REML", "DL", "EE", "PM")) subgroup("dorn2007", d, "ibs.crit", m)
d <- es$lehmann2018_SMD$data
for (m in c("REML", "DL", "EE", "PM")) subgroup("lehmann2018", d, "Design", m)
write_reference(list(source = SOURCE, control = CTL, cases = sg), "sweep_subgroup.json")

}
## ---------------------------------------------------------------- rma.mv + clubSandwich
if ("mv" %in% PARTS) {
mvc <- list()
## nlminb at rel.tol = 1e-12 sometimes reports convergence = 1 although it is at the optimum;
## then refit with rel.tol = 1e-10 and record it (`mv_control`)
rma_mv <- function(f) {  # f: function(ctl) giving the rma.mv fit
  fit <- tryCatch(f(MVCTL), error = function(e) NULL)
  if (!is.null(fit)) { fit$mv_control <- "rel.tol=1e-12"; return(fit) }
  fit <- f(list(rel.tol = 1e-10, iter.max = 10000, eval.max = 10000))
  fit$mv_control <- "rel.tol=1e-10"; fit
}
mvfields <- function(fit) {
  list(coef_names = arr(rownames(fit$beta)), coef = arr(fit$beta), se = arr(fit$se),
       statistic = arr(fit$zval), p_value = arr(fit$pval), ci_lb = arr(fit$ci.lb),
       ci_ub = arr(fit$ci.ub), sigma2 = arr(fit$sigma2), tau2 = arr(fit$tau2), rho = arr(fit$rho),
       QE = num(fit$QE), QE_p = num(fit$QEp), QM = num(fit$QM), QM_p = num(fit$QMp),
       logLik = num(logLik(fit)), df = num(fit$ddf[1]), mv_control = fit$mv_control)
}
robust_fields <- function(fit, cluster) {
  ct <- coef_test(fit, vcov = "CR2", cluster = cluster)
  out <- list(se = arr(ct$SE), statistic = arr(ct$tstat), df = arr(ct$df_Satt),
              p_value = arr(ct$p_Satt))
  p <- length(fit$beta)
  if (p > 1) {
    w <- Wald_test(fit, constraints = constrain_zero(2:p), vcov = "CR2", cluster = cluster,
                   test = "HTZ")
    out$wald <- list(F = num(w$Fstat), df_num = num(w$df_num), df_denom = num(w$df_denom),
                     p_value = num(w$p_val))
  }
  out
}
## three-level: obrien2003 PLO, cluster = study
d <- es$obrien2003_PLO$data; d$es <- seq_len(nrow(d))
for (m in c("REML", "ML")) for (tt in c("z", "t")) for (f in c("~ 1", "~ bmi")) {
  fit <- rma_mv(function(ctl) rma.mv(yi, vi, mods = as.formula(f), random = ~ 1 | study/es,
                data = d, method = m, test = tt, control = ctl))
  mvc[[length(mvc) + 1]] <- list(label = "obrien2003 three-level", kind = "multilevel",
    formula = f, method = m, test = tt, yi = arr(d$yi), vi = arr(d$vi), study = arr(d$study),
    es = arr(d$es), bmi = arr(d$bmi), expected = mvfields(fit),
    robust = if (tt == "z") robust_fields(fit, d$study) else NULL)
}
## four-level: mccurdy2020, first 20 articles
d <- dat.mccurdy2020[dat.mccurdy2020$article %in% sort(unique(dat.mccurdy2020$article))[1:20], ]
d <- d[!is.na(d$yi), ]
fit <- rma_mv(function(ctl) rma.mv(yi, vi, random = ~ 1 | article/experiment/sample/id,
                data = d, control = ctl))
mvc[[length(mvc) + 1]] <- list(label = "mccurdy2020 four-level", kind = "multilevel",
  formula = "~ 1", method = "REML", test = "z", yi = arr(d$yi), vi = arr(d$vi),
  article = arr(d$article), experiment = arr(d$experiment), sample = arr(d$sample),
  id = arr(d$id), expected = mvfields(fit), robust = robust_fields(fit, d$article))
## multivariate: fine1993 four outcomes, log OR, V = vcalc(rho = 0.6)
d <- dat.fine1993
long <- do.call(rbind, lapply(1:4, function(j) data.frame(study = d$study, outcome = j,
  ai = d[[paste0("e", j, "i")]], n1i = d$nei, ci = d[[paste0("c", j, "i")]], n2i = d$nci)))
long <- long[order(long$study, long$outcome), ]
long <- escalc("OR", ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = long)
long <- long[!is.na(long$yi), ]
V <- vcalc(vi, cluster = study, type = outcome, rho = 0.6, data = long)
for (s in c("CS", "HCS", "UN", "DIAG")) for (m in c("REML", "ML")) {
  fit <- tryCatch(rma_mv(function(ctl) rma.mv(yi, V, mods = ~ factor(outcome) - 1,
                random = ~ factor(outcome) | study, struct = s, data = long, method = m,
                control = ctl)), error = function(e) e)
  if (inherits(fit, "error")) { message(s, m, conditionMessage(fit)); next }
  mvc[[length(mvc) + 1]] <- list(label = "fine1993 multivariate", kind = "multivariate",
    struct = s, formula = "~ factor(outcome) - 1", method = m, test = "z",
    yi = arr(long$yi), vi = arr(long$vi), V = unname(as.matrix(V)), study = arr(long$study),
    outcome = arr(long$outcome), expected = mvfields(fit), robust = robust_fields(fit, long$study))
}
## multivariate: riley2003 (OS and DFS log HRs, diagonal V), ~ outcome - 1
long <- dat.riley2003[order(dat.riley2003$study, dat.riley2003$outcome), ]
for (s in c("CS", "HCS", "UN", "DIAG")) for (m in c("REML", "ML")) {
  fit <- tryCatch(rma_mv(function(ctl) rma.mv(yi, vi, mods = ~ outcome - 1,
                random = ~ outcome | study, struct = s, data = long, method = m,
                control = ctl)), error = function(e) e)
  if (inherits(fit, "error")) { message(s, m, conditionMessage(fit)); next }
  mvc[[length(mvc) + 1]] <- list(label = "riley2003 multivariate", kind = "multivariate",
    struct = s, formula = "~ outcome - 1", method = m, test = "z",
    yi = arr(long$yi), vi = arr(long$vi), V = diag(long$vi), study = arr(long$study),
    outcome = arr(as.character(long$outcome)), expected = mvfields(fit),
    robust = robust_fields(fit, long$study))
}
## univariate meta-regression + clubSandwich, clustered (lopez2019 by study)
x <- es$lopez2019_MD$data
for (m in c("REML", "DL")) {
  fit <- rma(yi, vi, mods = ~ cog + ba, data = x, method = m, control = CTL)
  mvc[[length(mvc) + 1]] <- list(label = "lopez2019 rma.uni clustered", kind = "uni",
    formula = "~ cog + ba", method = m, test = "z", yi = arr(x$yi), vi = arr(x$vi),
    study = arr(as.character(x$study)), cog = arr(x$cog), ba = arr(x$ba),
    expected = list(coef = arr(fit$beta), tau2 = num(fit$tau2)),
    robust = robust_fields(fit, x$study))
}
write_reference(list(source = SOURCE, control = MVCTL, clubSandwich =
  as.character(packageVersion("clubSandwich")), cases = mvc), "sweep_mv.json")
}
