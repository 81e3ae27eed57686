// Package ref is the float64 CPU reference of every op step-gpu runs on the
// GPU and of the whole model, written as plain loops in the style of llm.c.
// It imports nothing GPU-related and is the oracle of every GPU test; its own
// backward passes are checked against central finite differences.
//
// Shapes follow the project vocabulary: B (batch), T (time), C (d_model),
// NH (heads), HS (head size), H (FFN hidden), V (vocab), R (LoRA rank).
// Tensors are flat row-major []float64 slices.
package ref
