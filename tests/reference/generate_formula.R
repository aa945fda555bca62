#!/usr/bin/env Rscript
## Generates tests/reference/formula.json: what R and metafor make of moderator
## formulas, for alliance_meta/data/formula.py.
##
##   collation  R's sort() of strings, and levels(factor(x)) (R 4.2.2 with ICU:
##              Sys.getlocale("LC_COLLATE") = "C.UTF-8", icuGetCollate() = "root")
##   numbers    as.character() of doubles and integers (factor level labels)
##   deparse    deparse(parse(text = s)[[1]], width.cutoff = 500, backtick = TRUE)
##   terms      terms(formula): term.labels, intercept, the "factors" coding matrix
##   datasets   per data set: the columns, yi and vi, and for each formula
##              colnames(model.matrix(f, dat)), the matrix, attr(, "assign"), and
##              rma(yi, vi, mods = f, data = dat, method = M, test = T,
##                  control = CTL) for M in REML, DL, EE and T in z, knha
##
## Run from the repository root:
##     Rscript tests/reference/generate_formula.R

source("tests/reference/reference_common.R")

## ---------------------------------------------------------------- collation
strings <- c("b", "B", "a", "A", "_x", "Z", "\u00e4", "a1", "a10", "a2", "A1", "a-b", "ab",
             "a b", "aB", "Ab", "AB", "\u00e9", "e", "f", "E", "\u00df", "ss", "st", "x_1",
             "x.1", "x1", "", "z9", "Z9", "high", "High", "HIGH", "low", "Low", "mid-point",
             "midpoint", "mid point", "1", "10", "2", "(a)", "[a]", "a!", "a?", "a.",
             "\u00c9cole", "ecole", "Ecole", "\u00e9cole", "na\u00efve", "naive", "Naive",
             "#1", "$1", "%1", "&1", "+1", "=1", "@1", "~1", "^1", "|1", "<1", ">1",
             "\u00e6", "ae", "AE", "\u00f8", "o", "oe", "\u0153", "caf\u00e9", "cafe", "Cafe",
             "SS", "Ss", "sS", "Ae", "\u00c6", "aeb", "\u00e6a", "OE", "\u0152", "O", "\u00d8",
             "oa", "\u00f8a", "p", "d", "\u0111", "l", "\u0142", "m", "\ufb01", "fi", "FI",
             "\u00b2", "\u00bd", "\u00e1", "\u00c1", "\u00e0", "\u00e2", "\u00e5", "\u00e3",
             "\u00e7", "\u0105", "\u0101", "\u0103", "\u01ce", "\u0151", "\u00f5", "\u00f6",
             "ab\u00e9", "\u00e1bc", "\u00e1e", "\u03b1", "\u0391", "z", "\u0436", "\u00a0a",
             " a", "\t", "a\u00ada", "\u00fcber", "uber", "Uber", "\u00dcber", "\u00f1", "n",
             "Co-op", "coop", "co op", "co_op")
collation <- list(input = arr(strings), sorted = arr(sort(strings)),
                  factor_levels = arr(levels(factor(c("b", "C", "a", "B", "c", "A")))))

## ---------------------------------------------------------------- numbers
doubles <- c(1e5, 0.1 + 0.2, 1 / 3, 1e-4, 123456, 1234567.1, 0.00012, 1e15, 1e16, 2^53,
             -0.5, 1e-300, 1950, 0.001, 12345678901234567890, 1.5, 100, pi, -1e5, 2.5e-7,
             1e22, 123456.7, 99999, 999999.5, 0, -0, 5e-324, 1.7976931348623157e308, 0.1,
             1234.5678, 1e-15, 33.333333333333336, 7e10, 7.25e10)
integers <- c(0L, 1L, -3L, 100000L, 2147483647L)
## the doubles as text with 17 significant digits: jsonlite writes at most 15
numbers <- list(doubles = arr(sprintf("%.17g", doubles)), doubles_chr = arr(as.character(doubles)),
                integers = arr(integers), integers_chr = arr(as.character(integers)))

## ---------------------------------------------------------------- deparse
expressions <- c("I(x/2)", "I(x*2)", "I(x %% 2)", "I(x%/%2)", "I(x^2)", "I(-x)", "I(!x)",
                 "I(x>1&y<2)", "I(x %in% c(1,2))", "relevel(factor(g), ref='b')",
                 "relevel(factor(g),ref=\"b\")", "I((x-1)^2)", "I(x-1e5)", "I(x - 5L)",
                 "I(x - 0.10)", "log(x,base=2)", "I(a==\"it's\")", "I(x-.5)", "log(`my var`)",
                 "I(x|y)", "I(x&&y)", "I(x>=1)", "I(x!=1)", "I(+x)", "I(- - x)", "I(x - -1)",
                 "I(2^-1)", "I(x-1e-20)", "I(1/3)", "I(x + 1e15)", "I(x+123456)",
                 "I(x+100000)", "I(x+0.0001)", "I(x+0.00012)", "I(T)", "I(x + TRUE)",
                 "factor(x, levels = c('b', 'a'))", "ifelse(x > 1, 1, 0)", "I(x + 0x10)",
                 "I(x - 1.5e-7)", "I(-2^2)", "I(-x:y)", "I(x * (y + 1))", "I(x/y/z)",
                 "I(x^y^z)", "I(!x == y)", "I(a < b | c > d & e)", "scale(x)",
                 "I('a\\\\b\"c')", "log( x )", "exp(x/100)", "I(x %% 3 == 0)",
                 "I(1e-4 * x)", "I(.x1)", "I(x.y_z)", "sqrt(abs(x))", "I(x - 1950L)",
                 "I(100000L)", "I(1.0)", "I(5 %/% 2 * 3)", "I(- 1)", "I(x--1)",
                 "I(`a b` + 1)", "I(2 * -x)", "factor(x > 2)")
deparsed <- vapply(expressions, function(s)
  paste(deparse(parse(text = s)[[1]], width.cutoff = 500L, backtick = TRUE), collapse = " "),
  "")
deparse_ref <- list(input = arr(expressions), deparsed = arr(unname(deparsed)))

## ---------------------------------------------------------------- terms
formulas_terms <- c("~ a", "~ a*b", "~ a:b", "~ b:a + a", "~ a*b*c", "~ (a+b+c)^2",
                    "~ (a+b+c)^3", "~ a/b", "~ a/(b+c)", "~ (a+b)*(c+d)", "~ a*b - a",
                    "~ a*b - 1", "~ 0 + a*b", "~ -1 + a:b", "~ a:b:c + a:b",
                    "~ c:a + a:b + b", "~ a + b:c + c:d:a", "~ (a+b)^2 - a:b", "~ a*b + c*d",
                    "~ x + x:a", "~ a:x + x", "~ a + b - 1 + 1", "~ a + a", "~ a:b + b:a",
                    "~ I(x^2) + x", "~ log(x):a + a", "~ a*b*c - a:b:c", "~ a + (b + c):d",
                    "~ d:(a + b)*c", "~ 1", "~ 0 + a", "~ (a + b)/c", "~ a/b/c", "~ a^2",
                    "~ (a+b)^2:c", "~ c*(a+b)^2", "~ a:b + c + a", "~ (a+b):(c+d) + a",
                    "~ b*a + a*c", "~ a - a", "~ a + b + c - b", "~ a*(b+c) - a:c",
                    "~ (a*b)/c", "~ a:b:c", "~ c:b:a + a:c", "~ x:a:b + a:b + x",
                    "~ a + b:a:c + c:b", "~ (a+b+c+d)^2 - b:c", "~ log(x+1)*I(z - 2)",
                    "~ I(x>1):g + g", "~ `my var` * a", "~ a:b - 1", "~ -1 + a + b",
                    "~ a + b + 0", "~ (a)", "~ ((a + b))^2", "~ a*b - b - a",
                    "~ relevel(factor(g), ref = 'b') * x", "~ log( x ) + log(x)",
                    "~ (log(x) + a)^2", "~ (I(x - 1) + (a + b))*c")
terms_ref <- lapply(formulas_terms, function(s) {
  t <- terms(as.formula(s))
  fac <- attr(t, "factors")
  list(formula = s, term_labels = arr(attr(t, "term.labels")),
       intercept = attr(t, "intercept"),
       variables = arr(vapply(as.list(attr(t, "variables"))[-1], function(v)
         paste(deparse(v, width.cutoff = 500L, backtick = TRUE), collapse = " "), "")),
       ## one row per term: the code (0 absent, 1 contrasts, 2 indicators) of each variable
       factors = if (length(fac)) lapply(seq_len(ncol(fac)), function(j) arr(fac[, j])) else list())
})

## ---------------------------------------------------------------- data sets
column <- function(x) {
  if (is.factor(x)) return(list(type = "factor", values = arr(as.character(x)),
                                levels = arr(levels(x))))
  if (is.logical(x)) return(list(type = "logical", values = arr(x)))
  if (is.integer(x)) return(list(type = "integer", values = arr(x)))
  if (is.numeric(x)) return(list(type = "numeric", values = arr(x)))
  list(type = "character", values = arr(x))
}

quiet <- function(expr) {
  warns <- character(0)
  value <- withCallingHandlers(expr, warning = function(w) {
    warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") })
  list(value = value, warnings = warns)
}

fit_ref <- function(f, dat, method, test) {
  r <- tryCatch(quiet(rma(yi, vi, mods = f, data = dat, method = method, test = test,
                          control = CTL)),
                error = function(e) list(error = conditionMessage(e)))
  if (!is.null(r$error)) return(list(error = r$error))
  res <- r$value
  mm <- model.matrix(f, data = dat)
  cn <- colnames(mm)
  cn[cn == "(Intercept)"] <- "intrcpt"
  list(coef_names = arr(rownames(res$beta)), coef = arr(res$beta), se = arr(res$se),
       statistic = arr(res$zval), pvalue = arr(res$pval), ci_lb = arr(res$ci.lb),
       ci_ub = arr(res$ci.ub), QM = res$QM, QM_df = arr(res$QMdf), QM_p = res$QMp,
       tau2 = res$tau2, QE = res$QE, QE_df = res$k - res$p, QE_p = res$QEp,
       dropped = arr(cn[res$coef.na]), warnings = arr(r$warnings))
}

formula_ref <- function(s, dat, fits = TRUE) {
  f <- as.formula(s)
  mm <- model.matrix(f, data = dat)
  out <- list(formula = s, colnames = arr(colnames(mm)), assign = arr(attr(mm, "assign")),
              X = lapply(seq_len(nrow(mm)), function(i) arr(unname(mm[i, ]))))
  if (fits) {
    out$rma <- list()
    for (m in c("REML", "DL", "EE")) for (tt in c("z", "knha"))
      out$rma[[paste(m, tt, sep = "_")]] <- fit_ref(f, dat, m, tt)
  }
  out
}

dataset_ref <- function(name, dat, columns, formulas, design_only = character(0)) {
  list(name = name, k = nrow(dat), yi = arr(as.vector(dat$yi)), vi = arr(as.vector(dat$vi)),
       columns = lapply(dat[columns], column),
       formulas = c(lapply(formulas, formula_ref, dat = dat),
                    lapply(design_only, formula_ref, dat = dat, fits = FALSE)))
}

## dat.bcg (log risk ratios), with constructed columns: a logical, a factor whose
## levels are not in sorted order (one of them unused), and mixed-case strings
bcg <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
bcg$lat_high <- bcg$ablat > 30
bcg$alloc_f <- factor(bcg$alloc, levels = c("systematic", "random", "alternate", "unused"))
bcg$region <- rep(c("north", "South", "east", "West"), length.out = nrow(bcg))
bcg_formulas <- c(
  "~ ablat", "~ ablat + year", "~ ablat * year", "~ ablat:year", "~ alloc", "~ alloc - 1",
  "~ 0 + alloc", "~ alloc + ablat", "~ ablat * alloc", "~ ablat:alloc", "~ alloc:ablat - 1",
  "~ I(year - 1950)", "~ I(year-1950) * alloc", "~ log(ablat)", "~ sqrt(ablat) + exp(ablat/100)",
  "~ factor(alloc)", "~ relevel(factor(alloc), ref = 'random')",
  "~ relevel(factor(alloc), ref = \"systematic\") + ablat", "~ ablat + I(ablat * 2)",
  "~ ablat + year - 1", "~ 0 + ablat", "~ alloc + factor(alloc)", "~ 1",
  "~ I((year - 1950)^2) + year", "~ alloc/ablat", "~ scale(ablat)", "~ scale(ablat) * alloc",
  "~ lat_high", "~ lat_high * ablat", "~ lat_high - 1", "~ factor(lat_high)",
  "~ I(ablat > 30)", "~ lat_high:alloc", "~ ablat:lat_high + alloc", "~ alloc_f",
  "~ alloc_f - 1", "~ alloc_f * ablat", "~ factor(alloc_f)", "~ relevel(alloc_f, ref = 'random')",
  "~ region", "~ region + ablat", "~ factor(year > 1960) + ablat", "~ I(ablat %% 10) + ablat",
  "~ log(ablat, base = 10)", "~ I(alloc == 'random') * ablat", "~ year:ablat:alloc",
  "~ factor(alloc, levels = c('random', 'systematic', 'alternate'))",
  "~ (log(ablat) + alloc)^2", "~ ablat + alloc:ablat", "~ alloc:ablat + alloc",
  "~ I(alloc %in% c('random', 'systematic'))", "~ ifelse(ablat > 30, 'high', 'low')",
  "~ scale(ablat, scale = FALSE)", "~ as.numeric(alloc_f)", "~ exp(-ablat/100)",
  "~ I(ablat^-1)", "~ I(ablat >= 40 & lat_high)", "~ I(year %/% 10) + abs(ablat - 35)",
  "~ factor(alloc_f):ablat", "~ region:ablat - 1 + year")
bcg_design_only <- c("~ (ablat + year + alloc)^2", "~ region * alloc", "~ alloc:region - 1")
bcg_cols <- c("ablat", "year", "alloc", "lat_high", "alloc_f", "region")

## dat.raudenbush1985 (standardised mean differences)
rb <- dat.raudenbush1985
rb_formulas <- c(
  "~ weeks", "~ weeks * tester", "~ weeks:tester", "~ tester:weeks", "~ I(weeks - 10)",
  "~ log(weeks + 1)", "~ weeks + tester + setting", "~ weeks * tester - 1",
  "~ tester * setting", "~ tester:setting", "~ tester:setting - 1", "~ log(weeks + 1) * tester",
  "~ I(weeks > 3) + tester", "~ factor(weeks > 3) * tester", "~ I(weeks^2) + weeks",
  "~ weeks + I(weeks - 10)")
rb_design_only <- c("~ factor(weeks / 2)", "~ factor(year)")
rb_cols <- c("weeks", "tester", "setting", "year")

## dat.bangertdrowns2004 (standardised mean differences), complete cases of the
## moderators used (metafor would drop the incomplete ones with a warning)
bd <- dat.bangertdrowns2004
bd_cols <- c("grade", "length", "wic", "feedback", "info", "pers", "imag", "meta")
bd <- bd[complete.cases(bd[, bd_cols]), ]
bd_formulas <- c(
  "~ grade + length", "~ factor(grade)", "~ factor(grade) + length", "~ factor(grade) * length",
  "~ wic + feedback + info + pers + imag + meta", "~ factor(grade) - 1",
  "~ length:factor(grade)", "~ relevel(factor(grade), ref = '3')",
  "~ factor(meta):factor(imag)", "~ I(length^2) + length", "~ factor(wic) + factor(feedback)",
  "~ factor(grade, levels = c(4, 3, 2, 1))", "~ as.factor(grade) + info",
  "~ factor(grade):length - 1", "~ length * meta", "~ I(length/2) + sqrt(length)",
  "~ factor(info) * factor(pers)", "~ factor(grade) + factor(grade):length")
bd_design_only <- c("~ factor(length)")

## dat.mcdaniel1994 (Fisher z of correlations)
mc <- escalc(measure = "ZCOR", ri = ri, ni = ni, data = dat.mcdaniel1994)
mc <- mc[complete.cases(mc[, c("type", "struct")]), ]
mc_formulas <- c(
  "~ type", "~ type * struct", "~ factor(type)", "~ type:struct", "~ relevel(factor(type), ref = 'p')",
  "~ struct - 1", "~ type + struct - 1", "~ struct:type", "~ I(type == 'j') + struct",
  "~ type:struct - 1")
mc_cols <- c("type", "struct")

datasets <- list(
  dataset_ref("bcg", bcg, bcg_cols, bcg_formulas, bcg_design_only),
  dataset_ref("raudenbush1985", rb, rb_cols, rb_formulas, rb_design_only),
  dataset_ref("bangertdrowns2004", bd, bd_cols, bd_formulas, bd_design_only),
  dataset_ref("mcdaniel1994", mc, mc_cols, mc_formulas)
)

write_reference(list(source = SOURCE, R = R.version.string, control = CTL,
                     locale = Sys.getlocale("LC_COLLATE"), icu_collate = icuGetCollate(),
                     collation = collation, numbers = numbers, deparse = deparse_ref,
                     terms = terms_ref, datasets = datasets),
                "formula.json")
