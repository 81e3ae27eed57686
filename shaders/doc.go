// Package shaders holds step-gpu's WGSL compute kernels and their Go owners.
//
// Each kernel family is three files with one base name: NAME.wgsl (the
// forward and backward entry points), NAME.go (the pipelines, the Go mirror
// of the WGSL params struct, binding order, dispatch geometry and launchers)
// and NAME_test.go (checks against the float64 reference in nn/ref on
// hostile shapes). Launchers take the recorder first, then outputs, then
// inputs, then sizes, in the vocabulary B, T, C, NH, HS, H, V, L, R.
//
// Every kernel keeps each invocation's loop trip count below 65,535 (the
// lavapipe loop limiter, WEBGPU.md trap 2) and reports an estimate of its
// floating-point work so the recorder can bound submissions (trap 1).
package shaders
