// Command step-gpu pre-trains LLaMA-style language models on any GPU through
// WebGPU and implements STEP, staged parameter-efficient pre-training. Run
// `step-gpu --help` for the commands.
package main

import "github.com/step-gpu/step-gpu/cli"

func main() { cli.Exit() }
