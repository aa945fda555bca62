# Reference effect sizes from metafor's escalc() with its DEFAULT arguments
# (add = 1/2, to = "only0", drop00 = FALSE, vtype = "LS").
#
# Run from the repository root:  Rscript tests/reference/generate_escalc.R
# Writes tests/reference/escalc_<dataset>.json.  See PROVENANCE.md.
suppressPackageStartupMessages({
  library(metafor)
  library(metadat)
  library(jsonlite)
})

out_dir <- file.path("tests", "reference")

write_ref <- function(stem, dataset, raw, measures) {
  res <- list(
    source = paste("metafor", as.character(packageVersion("metafor"))),
    metadat = as.character(packageVersion("metadat")),
    r = R.version.string,
    dataset = dataset,
    raw = raw,
    measures = measures
  )
  path <- file.path(out_dir, paste0("escalc_", stem, ".json"))
  writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null"), path)
  cat("wrote", path, "\n")
}

one <- function(es) list(yi = as.numeric(es$yi), vi = as.numeric(es$vi))

# ---- correlations: ZCOR, COR, UCOR --------------------------------------
corr_ref <- function(stem, name, dat) {
  ms <- list()
  for (m in c("ZCOR", "COR", "UCOR")) ms[[m]] <- one(escalc(m, ri = ri, ni = ni, data = dat))
  write_ref(stem, name, list(ri = dat$ri, ni = dat$ni, label = as.character(seq_len(nrow(dat)))), ms)
}
corr_ref("mcdaniel1994", "dat.mcdaniel1994 (interview validity, 160 correlations)", dat.mcdaniel1994)
corr_ref("molloy2014", "dat.molloy2014 (conscientiousness and adherence, 16 correlations)", dat.molloy2014)

# ---- means: SMD, MD, SMDH, ROM ------------------------------------------
means_ref <- function(stem, name, dat) {
  ms <- list()
  for (m in c("SMD", "MD", "SMDH", "ROM"))
    ms[[m]] <- one(escalc(m, m1i = m1i, sd1i = sd1i, n1i = n1i,
                          m2i = m2i, sd2i = sd2i, n2i = n2i, data = dat))
  write_ref(stem, name, list(m1i = dat$m1i, sd1i = dat$sd1i, n1i = dat$n1i,
                             m2i = dat$m2i, sd2i = dat$sd2i, n2i = dat$n2i), ms)
}
means_ref("normand1999", "dat.normand1999 (stroke care, means and SDs)", dat.normand1999)
means_ref("curtis1998", "dat.curtis1998 (CO2 and plant biomass, means and SDs)", dat.curtis1998)

# ---- 2x2 tables: OR, RR, RD ---------------------------------------------
counts_ref <- function(stem, name, ai, bi, ci, di) {
  ms <- list()
  for (m in c("OR", "RR", "RD")) ms[[m]] <- one(escalc(m, ai = ai, bi = bi, ci = ci, di = di))
  # metafor's default to = "only0": 1/2 is added to all four cells of a table
  # that has at least one zero cell.
  corrected <- (ai == 0 | bi == 0 | ci == 0 | di == 0)
  write_ref(stem, name, list(ai = ai, bi = bi, ci = ci, di = di, corrected = corrected), ms)
}
b <- dat.bcg
counts_ref("bcg", "dat.bcg (BCG vaccine trials)", b$tpos, b$tneg, b$cpos, b$cneg)
n <- dat.nielweise2007
counts_ref("nielweise2007", "dat.nielweise2007 (catheter infections, zero cells)",
           n$ai, n$n1i - n$ai, n$ci, n$n2i - n$ci)
y <- dat.yusuf1985
y <- y[complete.cases(y[, c("ai", "n1i", "ci", "n2i")]), ]
counts_ref("yusuf1985", "dat.yusuf1985 (beta blockers; rows with missing counts removed; zero cells)",
           y$ai, y$n1i - y$ai, y$ci, y$n2i - y$ci)
