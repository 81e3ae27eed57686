// Package repro reproduces the STEP paper at laptop scale: it trains
// vanilla pre-training and STEP with several stage counts (and, on request,
// ablations that change one factor of STEP-3 each) on one device, with the
// same data order, seed and total tokens, and reports each method's final
// validation loss next to its maximum memory three ways (the paper's
// formula, the full plan and the ledger), as a table, results.json,
// results.md and two PNG plots.
package repro
