// Package step trains models: the training loop (schedule, gradient
// accumulation, clipping, evaluation, checkpoints, metrics) and STEP's staged
// growth on top of it (the memory planner, growth surgery and the stage
// runner, as they land).
package step
