## Shared set-up of the metafor reference generators in this folder.
## Each generator sources it; run them from the repository root.

suppressPackageStartupMessages({
  library(metafor)
  library(metadat)
  library(jsonlite)
})

OUTDIR <- Sys.getenv("REF_OUTDIR", "tests/reference")
SOURCE <- paste("metafor", as.character(packageVersion("metafor")))

## tight controls, as in PROVENANCE.md
CTL <- list(threshold = 1e-12, maxiter = 10000, tol = 1e-12)

arr <- function(x) I(as.vector(x))                             # force a JSON array

## write one reference file (full double precision, NA -> null)
write_reference <- function(x, name) {
  path <- file.path(OUTDIR, name)
  write_json(x, path, auto_unbox = TRUE, digits = NA, pretty = TRUE,
             null = "null", na = "null")
  message("wrote ", path)
  invisible(path)
}
