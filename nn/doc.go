// Package nn is the LLaMA-style model of step-gpu: its configuration, named
// parameters, and (as the trainer lands) the forward and backward passes
// built from the kernels in package shaders. Its float64 twin is nn/ref.
package nn
