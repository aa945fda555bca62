# Reference effect sizes for EVERY measure of metafor 3.8.1's escalc(), on the data
# sets of metafor's (metadat's) help examples for them, plus edge rows (zero cells,
# boundaries) and the non-default vtype/add/to/drop00 options.
#
# Run from the repository root:  Rscript tests/reference/generate_escalc_measures.R
# Writes tests/reference/escalc_measures.json.  See PROVENANCE.md (section "escalc").
#
# Each case records the measure, the inputs exactly as alliance_meta.escalc() is
# called with them (metafor's argument names), the options, and metafor's yi and vi.
# Rows where metafor gives NA are dropped unless the case keeps them ("keep_na",
# for drop00), so that every kept row is valid input.
suppressPackageStartupMessages({
  library(metafor)
  library(metadat)
  library(jsonlite)
})

stopifnot(as.character(packageVersion("metafor")) == "3.8.1")

cases <- list()

# metafor's UCOR calls gsl::hyperg_2F1, which loses up to three digits when c - a - b
# is a whole number >= 2 and x > 0.995 (UCOR with even n and |r| < 0.07).  The exact
# values: Gauss's series summed directly (long-double sum in R), or Gauss's theorem
# at x = 1; NA where the series would need more than 2e7 terms.
f21_exact <- function(a, cc, x) {
  mapply(function(cc, x) {
    if (is.na(cc) || is.na(x) || cc <= 2 * a) return(NA_real_)
    if (x == 1) return(exp(lgamma(cc) + lgamma(cc - 2 * a) - 2 * lgamma(cc - a)))
    K <- ceiling(max(2000, 60 / (1 - x)))
    if (K > 2e7) return(NA_real_)
    k <- 0:(K - 1)
    1 + sum(cumprod((a + k)^2 / ((cc + k) * (k + 1)) * x))
  }, cc, x)
}
ucor_exact <- function(ri, ni, vtype) {
  yi <- ri * f21_exact(1/2, (ni - 2) / 2, 1 - ri^2)
  vi <- switch(vtype,
    LS = (1 - yi^2)^2 / (ni - 1),
    AV = (1 - (sum(yi * ni) / sum(ni))^2)^2 / (ni - 1),
    UB = yi^2 - (1 - (ni - 3) / (ni - 2) * (1 - ri^2) * f21_exact(1, ni / 2, 1 - ri^2)))
  list(yi = yi, vi = vi)
}

add_case <- function(id, measure, dataset, inputs, options = list(), keep_na = FALSE,
                     r_inputs = inputs) {
  # r_inputs: what escalc() gets (differs from inputs only where metafor 3.8.1 has no
  # such argument, e.g. ti for COR, and R computes the conversion before escalc)
  args <- c(list(measure = measure), r_inputs, options)
  es <- suppressWarnings(do.call(escalc, args))
  yi <- as.numeric(es$yi)
  vi <- as.numeric(es$vi)
  keep <- if (keep_na) rep(TRUE, length(yi)) else (!is.na(yi) & !is.na(vi) & vi > 0)
  if (!any(keep)) stop("case ", id, " has no valid rows")
  sub <- lapply(inputs, function(x) if (length(x) > 1) x[keep] else x)
  case <- list(
    id = id, measure = measure, dataset = dataset, inputs = sub,
    options = options, yi = yi[keep], vi = vi[keep], ni = as.numeric(attr(es$yi, "ni"))[keep]
  )
  if (measure == "UCOR") {
    vt <- if (is.null(options$vtype)) "LS" else options$vtype
    ex <- ucor_exact(r_inputs$ri, r_inputs$ni, vt)
    case$exact_yi <- ex$yi[keep]
    case$exact_vi <- ex$vi[keep]
  }
  cases[[length(cases) + 1]] <<- case
}

# ---------------------------------------------------------------- 2x2 tables
bcg <- dat.bcg
tab_bcg <- list(ai = bcg$tpos, bi = bcg$tneg, ci = bcg$cpos, di = bcg$cneg)
gib <- dat.gibson2002[!is.na(dat.gibson2002$ai), ]
tab_gib <- list(ai = gib$ai, bi = gib$bi, ci = gib$ci, di = gib$di)
# edge rows: zero cells in one group, in both groups, everything in one column
tab_edge <- list(ai = c(0, 3, 2, 0, 7, 0, 12, 1),
                 bi = c(10, 9, 0, 15, 0, 8, 30, 1),
                 ci = c(3, 0, 5, 0, 9, 4, 0, 1),
                 di = c(9, 10, 5, 12, 0, 0, 25, 1))
two_by_two <- c("RR", "OR", "RD", "PETO", "AS", "PHI", "YUQ", "YUY", "RTET", "PBIT",
                "OR2D", "OR2DN", "OR2DL")
# RTET of a table with a zero cell is +-1 and metafor's variance there is numerical
# noise of a flat likelihood (alliance_meta raises): those rows are left out of RTET
# cases, and RTET is tested on the edge rows with add = 1/2
no_zero <- function(tab) {
  ok <- tab$ai > 0 & tab$bi > 0 & tab$ci > 0 & tab$di > 0
  lapply(tab, function(x) x[ok])
}
for (m in two_by_two) {
  tz <- if (m == "RTET") no_zero else identity
  add_case(paste0(m, "-bcg"), m, "dat.bcg", tz(tab_bcg))
  add_case(paste0(m, "-gibson2002"), m, "dat.gibson2002 (rows with 2x2 tables)", tz(tab_gib))
  if (m != "RTET") add_case(paste0(m, "-edge"), m, "edge rows (zero cells)", tab_edge)
}
add_case("RTET-edge-add-0.5", "RTET", "edge rows (zero cells)", tab_edge, list(add = 0.5))
nw <- dat.nielweise2007
for (m in c("OR", "RR", "RD", "PETO"))
  add_case(paste0(m, "-nielweise2007-n"), m, "dat.nielweise2007 (ai, n1i, ci, n2i)",
           list(ai = nw$ai, n1i = nw$n1i, ci = nw$ci, n2i = nw$n2i))
add_case("RD-hine1989-n", "RD", "dat.hine1989 (ai, n1i, ci, n2i)",
         list(ai = dat.hine1989$ai, n1i = dat.hine1989$n1i, ci = dat.hine1989$ci,
              n2i = dat.hine1989$n2i))
for (vt in c("UB", "AV")) add_case(paste0("RD-bcg-", vt), "RD", "dat.bcg", tab_bcg, list(vtype = vt))
for (vt in c("ST", "CS")) add_case(paste0("PHI-bcg-", vt), "PHI", "dat.bcg", tab_bcg, list(vtype = vt))
for (to in c("all", "if0all", "none"))
  for (m in c("OR", "RR", "RD"))
    add_case(paste0(m, "-edge-to-", to), m, "edge rows (zero cells)", tab_edge, list(to = to))
add_case("OR-edge-add-0.25", "OR", "edge rows (zero cells)", tab_edge, list(add = 0.25))
add_case("OR-edge-add-0.25-all", "OR", "edge rows (zero cells)", tab_edge,
         list(add = 0.25, to = "all"))
add_case("AS-edge-add-0.5", "AS", "edge rows (zero cells)", tab_edge, list(add = 0.5))
add_case("PHI-edge-add-0.5", "PHI", "edge rows (zero cells)", tab_edge, list(add = 0.5))
for (m in c("OR", "RR", "RD"))
  add_case(paste0(m, "-edge-drop00"), m, "edge rows (zero cells)", tab_edge,
           list(drop00 = TRUE), keep_na = TRUE)
# paired (matched-pairs) tables: the bcg cells read as paired tables
for (m in c("MPRD", "MPRR", "MPOR", "MPORC", "MPPETO"))
  add_case(paste0(m, "-bcg"), m, "dat.bcg cells read as paired tables", tab_bcg)
add_case("MPORM-bcg", "MPORM", "dat.bcg cells read as paired tables",
         c(tab_bcg, list(ri = seq(0.05, 0.65, by = 0.05))))
# genotype counts (help example of dat.frank2008)
fr <- dat.frank2008
add_case("REH-frank2008-bc", "REH", "dat.frank2008 (cases)",
         list(ai = fr$bc.ins.ins, bi = fr$bc.ins.del, ci = fr$bc.del.del))
add_case("REH-frank2008-ct", "REH", "dat.frank2008 (controls)",
         list(ai = fr$ct.ins.ins, bi = fr$ct.ins.del, ci = fr$ct.del.del))

# ----------------------------------------------------------------- rates
h <- dat.hart1999
nw8 <- dat.nielweise2008
rate_edge <- list(x1i = c(0, 4, 0, 12), x2i = c(3, 0, 0, 7), t1i = c(100, 250, 80, 1000),
                  t2i = c(120, 200, 90, 950.5))
for (m in c("IRR", "IRD", "IRSD")) {
  add_case(paste0(m, "-hart1999"), m, "dat.hart1999",
           list(x1i = h$x1i, x2i = h$x2i, t1i = h$t1i, t2i = h$t2i))
  add_case(paste0(m, "-nielweise2008"), m, "dat.nielweise2008",
           list(x1i = nw8$x1i, x2i = nw8$x2i, t1i = nw8$t1i, t2i = nw8$t2i))
  add_case(paste0(m, "-edge"), m, "edge rows (zero counts)", rate_edge)
  add_case(paste0(m, "-edge-drop00"), m, "edge rows (zero counts)", rate_edge,
           list(drop00 = TRUE), keep_na = TRUE)
}
add_case("IRR-edge-to-all", "IRR", "edge rows (zero counts)", rate_edge, list(to = "all"))
for (m in c("IR", "IRLN", "IRS", "IRFT")) {
  add_case(paste0(m, "-hart1999-g1"), m, "dat.hart1999 (treated groups)",
           list(xi = h$x1i, ti = h$t1i))
  add_case(paste0(m, "-nielweise2008-g2"), m, "dat.nielweise2008 (control groups)",
           list(xi = nw8$x2i, ti = nw8$t2i))
  add_case(paste0(m, "-edge"), m, "edge rows (zero counts)",
           list(xi = c(0, 1, 0, 25), ti = c(50, 10.5, 1000, 40)))
}
add_case("IRLN-edge-add-1-all", "IRLN", "edge rows (zero counts)",
         list(xi = c(0, 1, 0, 25), ti = c(50, 10.5, 1000, 40)), list(add = 1, to = "all"))

# ----------------------------------------------------------- proportions
pz <- dat.pritz1997
db <- dat.debruin2009
prop_edge <- list(xi = c(0, 12, 3, 20, 0), ni = c(15, 12, 40, 21, 1))
for (m in c("PR", "PLN", "PLO", "PAS", "PFT")) {
  add_case(paste0(m, "-pritz1997"), m, "dat.pritz1997 (xi, ni)", list(xi = pz$xi, ni = pz$ni))
  add_case(paste0(m, "-debruin2009"), m, "dat.debruin2009 (xi, mi)", list(xi = db$xi, mi = db$mi))
  add_case(paste0(m, "-edge"), m, "edge rows (xi = 0, xi = ni)", prop_edge)
}
for (vt in c("UB", "AV")) add_case(paste0("PR-pritz1997-", vt), "PR", "dat.pritz1997",
                                   list(xi = pz$xi, ni = pz$ni), list(vtype = vt))
for (m in c("PLN", "PLO")) add_case(paste0(m, "-debruin2009-AV"), m, "dat.debruin2009",
                                    list(xi = db$xi, mi = db$mi), list(vtype = "AV"))
add_case("PLO-edge-to-if0all", "PLO", "edge rows", prop_edge, list(to = "if0all"))
add_case("PFT-edge-add-0.5", "PFT", "edge rows", prop_edge, list(add = 0.5))

# ------------------------------------------------------------ reliability
bo <- dat.bonett2010
for (m in c("ARAW", "AHW", "ABT")) {
  add_case(paste0(m, "-bonett2010"), m, "dat.bonett2010",
           list(ai = bo$ai, mi = bo$mi, ni = bo$ni))
  add_case(paste0(m, "-edge"), m, "edge rows (negative and high alpha, few items)",
           list(ai = c(-0.2, 0.99, 0.5, 0), mi = c(2, 40, 3, 5), ni = c(10, 500, 3, 30)))
}

# ----------------------------------------------------------- correlations
mo <- dat.molloy2014
mc <- dat.mcdaniel1994[!is.na(dat.mcdaniel1994$ri), ]
cor_edge <- list(ri = c(0, 0.999, -0.95, 0.01, 0.3, -0.5), ni = c(5, 6, 7, 100000, 4000, 52))
for (m in c("COR", "UCOR", "ZCOR")) {
  add_case(paste0(m, "-molloy2014"), m, "dat.molloy2014", list(ri = mo$ri, ni = mo$ni))
  add_case(paste0(m, "-mcdaniel1994"), m, "dat.mcdaniel1994", list(ri = mc$ri, ni = mc$ni))
  add_case(paste0(m, "-edge"), m, "edge rows (r = 0, |r| near 1, small and huge n)", cor_edge)
}
add_case("COR-molloy2014-AV", "COR", "dat.molloy2014", list(ri = mo$ri, ni = mo$ni), list(vtype = "AV"))
for (vt in c("UB", "AV")) {
  add_case(paste0("UCOR-molloy2014-", vt), "UCOR", "dat.molloy2014", list(ri = mo$ri, ni = mo$ni),
           list(vtype = vt))
  add_case(paste0("UCOR-edge-", vt), "UCOR", "edge rows", cor_edge, list(vtype = vt))
}
# t statistics and signed p-values with n (metafor 3.8.1 has no ti/pi for COR: R converts)
t_cor <- c(2.5, -1.2, 0.4, 3.9)
n_cor <- c(30, 45, 12, 200)
p_cor <- c(0.012, -0.3, 0.87, 1e-5)
for (m in c("COR", "ZCOR", "UCOR")) {
  add_case(paste0(m, "-from-t"), m, "t statistics", list(ti = t_cor, ni = n_cor),
           r_inputs = list(ri = t_cor / sqrt(t_cor^2 + n_cor - 2), ni = n_cor))
  tp <- sign(p_cor) * qt(abs(p_cor) / 2, df = n_cor - 2, lower.tail = FALSE)
  add_case(paste0(m, "-from-p"), m, "signed two-sided p-values", list(pi = p_cor, ni = n_cor),
           r_inputs = list(ri = tp / sqrt(tp^2 + n_cor - 2), ni = n_cor))
}
al <- dat.aloe2013
for (m in c("PCOR", "ZPCOR", "SPCOR"))
  add_case(paste0(m, "-aloe2013"), m, "dat.aloe2013",
           list(ti = al$tval, ni = al$n, mi = al$preds, r2i = al$R2))
for (m in c("PCOR", "SPCOR"))
  add_case(paste0(m, "-aloe2013-AV"), m, "dat.aloe2013",
           list(ti = al$tval, ni = al$n, mi = al$preds, r2i = al$R2), list(vtype = "AV"))

# ------------------------------------------------------- two-group means
nm <- dat.normand1999
cu <- dat.curtis1998
gm <- dat.gibson2002
g2 <- function(d) list(m1i = d$m1i, m2i = d$m2i, sd1i = d$sd1i, sd2i = d$sd2i,
                       n1i = d$n1i, n2i = d$n2i)
means_edge <- list(m1i = c(1, -2, 5, 10), m2i = c(2, -4, 5, 0.5), sd1i = c(1, 3, 0.5, 4),
                   sd2i = c(2, 1, 0.5, 0.1), n1i = c(2, 3, 50, 4), n2i = c(3, 3, 60, 2))
two_group <- c("MD", "SMD", "SMDH", "SMD1", "SMD1H", "ROM", "CVR", "VR", "RPB", "RBIS",
               "D2OR", "D2ORN", "D2ORL")
for (m in two_group) {
  add_case(paste0(m, "-normand1999"), m, "dat.normand1999", g2(nm))
  add_case(paste0(m, "-curtis1998"), m, "dat.curtis1998", g2(cu))
  add_case(paste0(m, "-gibson2002"), m, "dat.gibson2002", g2(gm))
  add_case(paste0(m, "-edge"), m, "edge rows (small groups, negative and equal means)", means_edge)
}
add_case("MD-normand1999-HO", "MD", "dat.normand1999", g2(nm), list(vtype = "HO"))
for (vt in c("UB", "LS2", "AV")) {
  add_case(paste0("SMD-normand1999-", vt), "SMD", "dat.normand1999", g2(nm), list(vtype = vt))
  add_case(paste0("SMD1-curtis1998-", vt), "SMD1", "dat.curtis1998", g2(cu), list(vtype = vt))
}
add_case("SMDH-normand1999-LS2", "SMDH", "dat.normand1999", g2(nm), list(vtype = "LS2"))
for (vt in c("HO", "AV", "AVHO"))
  add_case(paste0("ROM-curtis1998-", vt), "ROM", "dat.curtis1998", g2(cu), list(vtype = vt))
add_case("RPB-normand1999-CS", "RPB", "dat.normand1999", g2(nm), list(vtype = "CS"))
# SMD from t statistics and from standardised differences (metafor 3.8.1's ti/di)
t_smd <- c(2.1, -0.8, 3.3, 0.05)
n1_smd <- c(20, 35, 12, 100)
n2_smd <- c(22, 30, 15, 95)
add_case("SMD-from-t", "SMD", "t statistics", list(ti = t_smd, n1i = n1_smd, n2i = n2_smd))
add_case("SMD-from-d", "SMD", "standardised differences",
         list(di = c(0.5, -0.2, 1.1, 0), n1i = n1_smd, n2i = n2_smd))
p_smd <- c(0.04, -0.5, 0.001, 0.96)
t_from_p <- sign(p_smd) * qt(abs(p_smd) / 2, df = n1_smd + n2_smd - 2, lower.tail = FALSE)
add_case("SMD-from-p", "SMD", "signed two-sided p-values",
         list(pi = p_smd, n1i = n1_smd, n2i = n2_smd),
         r_inputs = list(ti = t_from_p, n1i = n1_smd, n2i = n2_smd))

# --------------------------------------------------------- single groups
g1 <- function(d) list(mi = d$m1i, sdi = d$sd1i, ni = d$n1i)
for (m in c("MN", "MNLN", "CVLN", "SDLN", "SMN")) {
  add_case(paste0(m, "-normand1999"), m, "dat.normand1999 (group 1)", g1(nm))
  add_case(paste0(m, "-curtis1998"), m, "dat.curtis1998 (group 1)", g1(cu))
}
sn <- dat.senn2013
add_case("MN-senn2013", "MN", "dat.senn2013 (help example)", list(mi = sn$mi, sdi = sn$sdi, ni = sn$ni))
add_case("SMN-senn2013", "SMN", "dat.senn2013", list(mi = sn$mi, sdi = sn$sdi, ni = sn$ni))

# ------------------------------------------------------- pre-post change
# Morris (2008) as entered on the metafor website (analyses:morris2008)
datT <- data.frame(m_pre = c(30.6, 23.5, 0.5, 53.4, 35.6), m_post = c(38.5, 26.8, 0.7, 75.9, 36.0),
                   sd_pre = c(15.0, 3.1, 0.1, 14.5, 4.7), sd_post = c(11.6, 4.1, 0.1, 4.4, 4.6),
                   ni = c(20, 50, 9, 10, 14), ri = c(0.47, 0.64, 0.77, 0.89, 0.44))
datC <- data.frame(m_pre = c(23.1, 24.9, 0.6, 55.7, 34.8), m_post = c(19.7, 25.3, 0.6, 60.7, 33.4),
                   sd_pre = c(13.8, 4.1, 0.2, 17.3, 3.1), sd_post = c(14.8, 3.3, 0.2, 17.9, 6.9),
                   ni = c(20, 42, 9, 11, 14), ri = c(0.47, 0.64, 0.77, 0.89, 0.44))
pp <- function(d) list(m1i = d$m_post, m2i = d$m_pre, sd1i = d$sd_pre, sd2i = d$sd_post,
                       ni = d$ni, ri = d$ri)
for (m in c("MC", "SMCC", "SMCR", "SMCRH", "ROMC", "CVRC", "VRC")) {
  add_case(paste0(m, "-morris2008-T"), m, "Morris (2008), treatment groups", pp(datT))
  add_case(paste0(m, "-morris2008-C"), m, "Morris (2008), control groups", pp(datC))
}
for (m in c("SMCC", "SMCR"))
  add_case(paste0(m, "-morris2008-T-LS2"), m, "Morris (2008), treatment groups", pp(datT),
           list(vtype = "LS2"))

# ---------------------------------------------------------------- GEN
lw <- data.frame(yi = c(-0.33, 0.32, 0.39, 0.31, 0.17, 0.64, -0.33, 0.15, -0.02, 0.00),
                 vi = c(0.084, 0.035, 0.017, 0.034, 0.072, 0.117, 0.102, 0.093, 0.012, 0.067))
add_case("GEN-lipsey-wilson", "GEN", "Lipsey & Wilson (2001), Table 7.1 (escalc help example)",
         list(yi = lw$yi, vi = lw$vi))
add_case("GEN-lipsey-wilson-sei", "GEN", "Lipsey & Wilson (2001), Table 7.1, as SEs",
         list(yi = lw$yi, sei = sqrt(lw$vi)))

# ------------------------------------------------- random rows, every measure
# 40 random valid rows per measure (seeded), beyond the example data sets
set.seed(20261206)
k <- 40
n1 <- sample(5:400, k, replace = TRUE); n2 <- sample(5:400, k, replace = TRUE)
a <- rbinom(k, n1, runif(k, 0.05, 0.6)); cc <- rbinom(k, n2, runif(k, 0.05, 0.6))
tab_rand <- list(ai = a, bi = n1 - a, ci = cc, di = n2 - cc)
for (m in c(two_by_two, "MPRD", "MPRR", "MPOR", "MPORC", "MPPETO"))
  add_case(paste0(m, "-random"), m, "random tables (seeded)",
           if (m == "RTET") no_zero(tab_rand) else tab_rand)
add_case("MPORM-random", "MPORM", "random tables (seeded)", c(tab_rand, list(ri = runif(k, -0.3, 0.8))))
add_case("REH-random", "REH", "random genotype counts (seeded)",
         list(ai = sample(20:500, k), bi = sample(20:500, k), ci = sample(20:500, k)))
t1 <- runif(k, 20, 5000); t2 <- runif(k, 20, 5000)
for (m in c("IRR", "IRD", "IRSD"))
  add_case(paste0(m, "-random"), m, "random rates (seeded)",
           list(x1i = rpois(k, t1 * 0.01), x2i = rpois(k, t2 * 0.02), t1i = t1, t2i = t2))
for (m in c("IR", "IRLN", "IRS", "IRFT"))
  add_case(paste0(m, "-random"), m, "random rates (seeded)", list(xi = rpois(k, t1 * 0.01), ti = t1))
np <- sample(1:300, k, replace = TRUE)
for (m in c("PR", "PLN", "PLO", "PAS", "PFT"))
  add_case(paste0(m, "-random"), m, "random proportions (seeded)",
           list(xi = rbinom(k, np, runif(k)), ni = np))
for (m in c("ARAW", "AHW", "ABT"))
  add_case(paste0(m, "-random"), m, "random alphas (seeded)",
           list(ai = runif(k, -0.5, 0.98), mi = sample(2:60, k, replace = TRUE),
                ni = sample(3:2000, k, replace = TRUE)))
nr <- sample(6:3000, k, replace = TRUE)
for (m in c("COR", "UCOR", "ZCOR"))
  add_case(paste0(m, "-random"), m, "random correlations (seeded)", list(ri = runif(k, -0.98, 0.98), ni = nr))
nn <- sample(30:3000, k, replace = TRUE); mm <- sample(1:20, k, replace = TRUE)
for (m in c("PCOR", "ZPCOR", "SPCOR"))
  add_case(paste0(m, "-random"), m, "random regression t statistics (seeded)",
           list(ti = rnorm(k, 0, 2), ni = nn, mi = mm, r2i = runif(k, 0.3, 0.9)))
grp <- list(m1i = runif(k, 1, 50), m2i = runif(k, 1, 50), sd1i = runif(k, 0.5, 20),
            sd2i = runif(k, 0.5, 20), n1i = n1, n2i = n2)
for (m in two_group) add_case(paste0(m, "-random"), m, "random group summaries (seeded)", grp)
for (m in c("MN", "MNLN", "CVLN", "SDLN", "SMN"))
  add_case(paste0(m, "-random"), m, "random group summaries (seeded)",
           list(mi = grp$m1i, sdi = grp$sd1i, ni = n1))
prepost <- list(m1i = grp$m1i, m2i = grp$m2i, sd1i = grp$sd1i, sd2i = grp$sd2i, ni = n1,
                ri = runif(k, -0.5, 0.95))
for (m in c("MC", "SMCC", "SMCR", "SMCRH", "ROMC", "CVRC", "VRC"))
  add_case(paste0(m, "-random"), m, "random pre-post summaries (seeded)", prepost)

res <- list(
  source = paste("metafor", as.character(packageVersion("metafor"))),
  metadat = as.character(packageVersion("metadat")),
  mvtnorm = as.character(packageVersion("mvtnorm")),
  gsl = as.character(packageVersion("gsl")),
  r = R.version.string,
  cases = cases
)
path <- file.path("tests", "reference", "escalc_measures.json")
writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, na = "null"), path)
cat("wrote", path, "with", length(cases), "cases\n")
