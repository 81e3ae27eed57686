// Package data owns the training text of step-gpu: it opens corpora (the Go
// standard library source by default, or text, JSONL and Parquet files),
// splits them deterministically into train and validation documents, caches
// their tokenization in binary token files and serves (B, T+1) windows of
// tokens to the trainer.
//
// A corpus is a list of sources (files); each source holds one or more
// documents, and a document's identity is its source name plus its index
// within that source. Iteration order is the sorted source order, then the
// order inside each file, so every pass over a corpus is deterministic.
package data
