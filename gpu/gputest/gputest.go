// Package gputest gives GPU tests their device. Every GPU test in step-gpu
// gets its device from Device, which opens the adapter step-gpu would choose
// (a GPU if there is one, else the CPU adapter, Mesa lavapipe) once per test
// binary, and skips with a clear reason only when no adapter exists at all.
// CI always has lavapipe, so in CI nothing skips; set STEP_GPU_REQUIRE=1 to
// turn the skip into a failure.
package gputest

import (
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/step-gpu/step-gpu/gpu"
)

var (
	once    sync.Once
	shared  *gpu.Device
	openErr error
)

// Device returns the shared test device, skipping the test when no WebGPU
// adapter exists (failing instead when STEP_GPU_REQUIRE=1).
func Device(tb testing.TB) *gpu.Device {
	tb.Helper()
	once.Do(func() {
		shared, openErr = gpu.Open(gpu.Options{})
	})
	if openErr != nil {
		if errors.Is(openErr, gpu.ErrNoAdapter) && os.Getenv("STEP_GPU_REQUIRE") != "1" {
			tb.Skipf("no WebGPU adapter: %v", openErr)
		}
		tb.Fatalf("open test device: %v", openErr)
	}
	return shared
}

// Upload allocates a scratch buffer holding data, released when the test ends.
func Upload(tb testing.TB, d *gpu.Device, name string, data []float32) *gpu.Buffer {
	tb.Helper()
	b, err := d.NewBufferF32(name, gpu.CatScratch, data)
	if err != nil {
		tb.Fatalf("upload %s: %v", name, err)
	}
	tb.Cleanup(b.Release)
	return b
}

// UploadU32 allocates a scratch buffer holding uint32 data, released when the
// test ends.
func UploadU32(tb testing.TB, d *gpu.Device, name string, data []uint32) *gpu.Buffer {
	tb.Helper()
	b, err := d.NewBuffer(name, gpu.CatScratch, uint64(4*len(data)))
	if err != nil {
		tb.Fatalf("upload %s: %v", name, err)
	}
	tb.Cleanup(b.Release)
	if err := b.WriteU32(0, data); err != nil {
		tb.Fatalf("upload %s: %v", name, err)
	}
	return b
}

// Padding is the number of NaN-filled guard elements Output adds after a
// tensor; a kernel that writes past its output's end overwrites them.
const Padding = 67

// Output allocates an output buffer of n elements followed by Padding NaN
// guard elements, with the first n filled with fill. CheckPadding verifies
// the guard afterwards.
func Output(tb testing.TB, d *gpu.Device, name string, n int, fill float32) *gpu.Buffer {
	tb.Helper()
	data := make([]float32, n+Padding)
	nan := float32(nanValue())
	for i := range data {
		if i < n {
			data[i] = fill
		} else {
			data[i] = nan
		}
	}
	return Upload(tb, d, name, data)
}

// Read downloads n float32 values from the start of b.
func Read(tb testing.TB, b *gpu.Buffer, n int) []float32 {
	tb.Helper()
	out, err := b.ReadF32(0, n)
	if err != nil {
		tb.Fatalf("read %s: %v", b.Name, err)
	}
	return out
}

// CheckPadding fails the test if any guard element after the first n
// elements of b is no longer NaN.
func CheckPadding(tb testing.TB, b *gpu.Buffer, n int) {
	tb.Helper()
	pad, err := b.ReadF32(n, Padding)
	if err != nil {
		tb.Fatalf("read padding of %s: %v", b.Name, err)
	}
	for i, v := range pad {
		if v == v {
			tb.Fatalf("%s: guard element %d past the end was overwritten with %v", b.Name, i, v)
		}
	}
}

// Run records work through a fresh recorder and flushes it, failing the
// test on any error.
func Run(tb testing.TB, d *gpu.Device, record func(r *gpu.Recorder) error) {
	tb.Helper()
	r := d.NewRecorder()
	if err := record(r); err != nil {
		tb.Fatalf("record: %v", err)
	}
	if err := r.Flush(); err != nil {
		tb.Fatalf("flush: %v", err)
	}
}
