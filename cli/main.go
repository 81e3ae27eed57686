package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/shaders"
)

// Globals are the flags every command takes.
type Globals struct {
	Adapter string `help:"Adapter to use: an index or a name substring from 'step-gpu devices' (default: discrete GPU, then integrated, then CPU; env STEP_GPU_ADAPTER)." placeholder:"SEL"`
	Matmul  string `help:"Matmul kernels: auto (measure on the device, keep the fastest), simple, texture or storage-texture." enum:"auto,simple,texture,storage-texture" default:"auto" env:"STEP_GPU_MATMUL"`
}

// CLI is the root of the command tree.
type CLI struct {
	Globals
	Devices  DevicesCmd  `cmd:"" help:"List WebGPU adapters, their limits and features; mark the one step-gpu would use."`
	Bench    BenchCmd    `cmd:"" help:"Measure kernel throughput at the shapes of a model config."`
	Train    TrainCmd    `cmd:"" help:"Pre-train a model (default: the tiny preset on the Go standard library source)."`
	Eval     EvalCmd     `cmd:"" help:"Validation loss and perplexity of a checkpoint."`
	Generate GenerateCmd `cmd:"" help:"Sample text from a checkpoint."`
	Inspect  InspectCmd  `cmd:"" help:"Verify a checkpoint and print its header, growth history and tensor table."`
	Plan     PlanCmd     `cmd:"" help:"Plan STEP's stages: the split that minimises peak memory and the bytes of every stage."`
	Export   ExportCmd   `cmd:"" help:"Write a checkpoint's model as a Hugging Face LLaMA folder (config.json, model.safetensors, tokenizer.json)."`
	Import   ImportCmd   `cmd:"" help:"Convert a Hugging Face LLaMA folder into a step-gpu checkpoint."`
	Repro    ReproCmd    `cmd:"" help:"Reproduce STEP at laptop scale: vanilla, STEP-2 and STEP-3 (and ablations) on the same tokens; loss, memory, plots."`
}

// Main runs the command line with args (without the program name) and
// returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) (code int) {
	// kong calls Exit after printing --help (and on some errors); unwind
	// to here instead of exiting the process, so Main stays testable.
	defer func() {
		if r := recover(); r != nil {
			ex, ok := r.(kongExit)
			if !ok {
				panic(r)
			}
			code = int(ex)
		}
	}()
	var root CLI
	parser, err := kong.New(&root,
		kong.Name("step-gpu"),
		kong.Description("Pre-train LLaMA-style models on any GPU through WebGPU, with STEP staged growth."),
		kong.Writers(stdout, stderr),
		kong.UsageOnError(),
		kong.Exit(func(c int) { panic(kongExit(c)) }),
		kong.Vars{"presets": strings.Join(nn.PresetNames(), ", ")},
	)
	if err != nil {
		fmt.Fprintf(stderr, "step-gpu: %v\n", err)
		return 2
	}
	ctx, err := parser.Parse(args)
	if err != nil {
		var pe *kong.ParseError
		if errors.As(err, &pe) {
			fmt.Fprintf(stderr, "step-gpu: %v\n", err)
			return 2
		}
		// --help and similar exit through kong.Exit after printing.
		return 0
	}
	if ctx == nil {
		return 0
	}
	env := &Env{Globals: root.Globals, Stdout: stdout, Stderr: stderr}
	if err := ctx.Run(env); err != nil {
		fmt.Fprintf(stderr, "step-gpu: %v\n", err)
		if errors.Is(err, gpu.ErrNoAdapter) {
			return 3
		}
		return 1
	}
	return 0
}

// kongExit carries kong's exit code out of the parser.
type kongExit int

// Env is what every command's Run receives.
type Env struct {
	Globals
	Stdout, Stderr io.Writer
}

// open opens the device the flags and environment select and says which.
func (e *Env) open() (*gpu.Device, error) {
	d, err := gpu.Open(gpu.Options{Adapter: e.Adapter})
	if err != nil {
		return nil, err
	}
	path, err := shaders.ParseMatmulPath(e.Matmul)
	if err != nil {
		d.Close()
		return nil, err
	}
	if path == shaders.MatmulStorageTexture && !d.StorageTextureRead {
		d.Close()
		return nil, fmt.Errorf("--matmul storage-texture: %s offers no read-only storage textures (%s); use auto or texture",
			d.Info.Name, d.StorageTextureNote)
	}
	shaders.SetMatmulPath(d, path)
	fmt.Fprintf(e.Stderr, "device: %s (%s, %s; %s)\n", d.Info.Name, d.Info.Type, d.Info.Backend, d.Reason)
	return d, nil
}

// Exit runs Main on the process arguments and exits.
func Exit() {
	prepareRuntime()
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}
