// Package cli is the step-gpu command line: it parses flags with kong and
// calls into step, nn, shaders and gpu. The binary's main package lives in
// cli/step-gpu.
package cli
