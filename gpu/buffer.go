package gpu

import (
	"fmt"
	"math"
	"sync/atomic"
	"unsafe"

	"github.com/cogentcore/webgpu/wgpu"
)

// ChunkBytes is the largest single queue write or readback copy. WEBGPU.md
// measured a 64 MiB queue.WriteBuffer ~20x slower than four 16 MiB ones;
// `step-gpu bench --op load` on lavapipe here was fastest for both
// directions at 4 MiB (1, 2, 4, 8 and 16 MiB tried).
const ChunkBytes = 4 << 20

// maxPendingWrites bounds the bytes of queued writes before they are
// submitted on their own.
const maxPendingWrites = 64 << 20

// Align is the byte multiple every buffer size is rounded up to, so that
// kernels may read vec4s past a tensor's last element without leaving the
// buffer.
const Align = 16

// Buffer is a storage buffer on the device, counted in the ledger under its
// category until Release.
type Buffer struct {
	d    *Device
	buf  *wgpu.Buffer
	Name string
	Cat  Category
	// Size is the allocated size in bytes (a multiple of Align).
	Size uint64
	id   uint64
}

// nextBufferID numbers buffers and textures for the bind-group cache.
var nextBufferID atomic.Uint64

// NewBuffer allocates a zero-filled storage buffer of at least size bytes.
// It fails, naming the buffer, the ledger's total and the device limit, when
// the buffer is larger than the device allows.
func (d *Device) NewBuffer(name string, cat Category, size uint64) (*Buffer, error) {
	if size == 0 {
		size = Align
	}
	size = (size + Align - 1) / Align * Align
	if size > d.Limits.MaxBufferSize {
		return nil, fmt.Errorf("allocate %s: %.1f MiB exceeds the device's maxBufferSize %.1f MiB "+
			"(ledger holds %.1f MiB); use more stages, a smaller batch or recompute (step-gpu plan)",
			name, MiB(size), MiB(d.Limits.MaxBufferSize), MiB(d.Ledger.Total()))
	}
	if err := d.Lost(); err != nil {
		return nil, fmt.Errorf("allocate %s: %w", name, err)
	}
	b, err := d.dev.CreateBuffer(&wgpu.BufferDescriptor{
		Label: name,
		Size:  size,
		Usage: wgpu.BufferUsageStorage | wgpu.BufferUsageCopySrc | wgpu.BufferUsageCopyDst,
	})
	if err != nil {
		return nil, fmt.Errorf("allocate %s (%.1f MiB, ledger %.1f MiB): %w", name, MiB(size), MiB(d.Ledger.Total()), err)
	}
	d.Ledger.add(cat, size)
	return &Buffer{d: d, buf: b, Name: name, Cat: cat, Size: size, id: nextBufferID.Add(1)}, nil
}

// NewBufferF32 allocates a buffer and uploads data into it.
func (d *Device) NewBufferF32(name string, cat Category, data []float32) (*Buffer, error) {
	b, err := d.NewBuffer(name, cat, uint64(4*len(data)))
	if err != nil {
		return nil, err
	}
	if err := b.WriteF32(0, data); err != nil {
		b.Release()
		return nil, err
	}
	return b, nil
}

// Release frees the buffer, its cached bind groups and its ledger entry.
// Releasing twice is a programmer error and panics.
func (b *Buffer) Release() {
	if b.buf == nil {
		panic("gpu: double release of buffer " + b.Name)
	}
	b.d.binds.dropBuffer(b.id)
	b.buf.Destroy()
	b.buf.Release()
	b.buf = nil
	b.d.Ledger.sub(b.Cat, b.Size)
}

// Len returns the number of 4-byte elements the buffer holds.
func (b *Buffer) Len() int { return int(b.Size / 4) }

// Write uploads bytes at a byte offset, in chunks of at most ChunkBytes.
func (b *Buffer) Write(offset uint64, data []byte) error {
	if offset+uint64(len(data)) > b.Size {
		return fmt.Errorf("write %s: %d bytes at offset %d overflow its %d bytes", b.Name, len(data), offset, b.Size)
	}
	for len(data) > 0 {
		n := min(len(data), ChunkBytes)
		if err := b.d.queue.WriteBuffer(b.buf, offset, data[:n]); err != nil {
			return fmt.Errorf("write %s: %w", b.Name, err)
		}
		// Queue writes execute with the next submission; a model's worth of
		// them would make that submission long enough to trip the watchdog,
		// so land them every maxPendingWrites bytes.
		b.d.pendingWrites += uint64(n)
		if b.d.pendingWrites >= maxPendingWrites {
			if err := b.d.FlushWrites(); err != nil {
				return fmt.Errorf("write %s: %w", b.Name, err)
			}
		}
		data = data[n:]
		offset += uint64(n)
	}
	return nil
}

// WriteF32 uploads float32 values starting at element index off.
func (b *Buffer) WriteF32(off int, data []float32) error {
	if len(data) == 0 {
		return nil
	}
	return b.Write(uint64(4*off), unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), 4*len(data)))
}

// WriteU32 uploads uint32 values starting at element index off.
func (b *Buffer) WriteU32(off int, data []uint32) error {
	if len(data) == 0 {
		return nil
	}
	return b.Write(uint64(4*off), unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), 4*len(data)))
}

// FillF32 sets every element to v (NaN is allowed: tests use it to fill
// padding that kernels must not touch).
func (b *Buffer) FillF32(v float32) error {
	data := make([]float32, b.Len())
	for i := range data {
		data[i] = v
	}
	return b.WriteF32(0, data)
}

// Read downloads size bytes from a byte offset, through a mappable staging
// buffer of at most ChunkBytes, waiting for all earlier submissions.
func (b *Buffer) Read(offset, size uint64) ([]byte, error) {
	if offset+size > b.Size || offset%4 != 0 || size%4 != 0 {
		return nil, fmt.Errorf("read %s: range [%d, %d) invalid for %d bytes", b.Name, offset, offset+size, b.Size)
	}
	d := b.d
	out := make([]byte, size)
	chunk := min(size, ChunkBytes)
	if chunk == 0 {
		return out, nil
	}
	staging, err := d.dev.CreateBuffer(&wgpu.BufferDescriptor{
		Label: "staging:" + b.Name,
		Size:  chunk,
		Usage: wgpu.BufferUsageMapRead | wgpu.BufferUsageCopyDst,
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: staging: %w", b.Name, err)
	}
	d.Ledger.add(CatStaging, chunk)
	defer func() {
		staging.Destroy()
		staging.Release()
		d.Ledger.sub(CatStaging, chunk)
	}()
	for done := uint64(0); done < size; done += chunk {
		n := min(chunk, size-done)
		enc, err := d.dev.CreateCommandEncoder(nil)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", b.Name, err)
		}
		if err := enc.CopyBufferToBuffer(b.buf, offset+done, staging, 0, n); err != nil {
			enc.Release()
			return nil, fmt.Errorf("read %s: copy: %w", b.Name, err)
		}
		if err := d.finishAndWait(enc, "read "+b.Name); err != nil {
			return nil, err
		}
		var status wgpu.BufferMapAsyncStatus
		if err := staging.MapAsync(wgpu.MapModeRead, 0, n, func(s wgpu.BufferMapAsyncStatus) { status = s }); err != nil {
			return nil, fmt.Errorf("read %s: map: %w", b.Name, err)
		}
		if err := d.wait("map " + b.Name); err != nil {
			return nil, err
		}
		if status != wgpu.BufferMapAsyncStatusSuccess {
			return nil, fmt.Errorf("read %s: map status %v", b.Name, status)
		}
		copy(out[done:done+n], staging.GetMappedRange(0, uint(n)))
		if err := staging.Unmap(); err != nil {
			return nil, fmt.Errorf("read %s: unmap: %w", b.Name, err)
		}
	}
	return out, nil
}

// ReadF32 downloads n float32 values starting at element index off.
func (b *Buffer) ReadF32(off, n int) ([]float32, error) {
	raw, err := b.Read(uint64(4*off), uint64(4*n))
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24)
	}
	return out, nil
}

// ReadU32 downloads n uint32 values starting at element index off.
func (b *Buffer) ReadU32(off, n int) ([]uint32, error) {
	raw, err := b.Read(uint64(4*off), uint64(4*n))
	if err != nil {
		return nil, err
	}
	out := make([]uint32, n)
	for i := range out {
		out[i] = uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24
	}
	return out, nil
}
