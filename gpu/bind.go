package gpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/cogentcore/webgpu/wgpu"
)

// Arg is one binding of a dispatch: a buffer range or a texture.
type Arg struct {
	buf       *Buffer
	off, size uint64
	tex       *Texture
}

// Arg binds the whole buffer.
func (b *Buffer) Arg() Arg { return Arg{buf: b, size: b.Size} }

// Range binds size bytes from byte offset off. The offset must be a multiple
// of the device's minStorageBufferOffsetAlignment (checked at dispatch).
func (b *Buffer) Range(off, size uint64) Arg { return Arg{buf: b, off: off, size: size} }

// Buffer returns the buffer an Arg binds and the byte offset of its range
// (nil for a texture).
func (a Arg) Buffer() (*Buffer, uint64) { return a.buf, a.off }

// Arg binds the texture's whole view.
func (t *Texture) Arg() Arg { return Arg{tex: t} }

func (a Arg) key() string {
	if a.tex != nil {
		return "t" + strconv.FormatUint(a.tex.id, 10)
	}
	return "b" + strconv.FormatUint(a.buf.id, 10) + ":" + strconv.FormatUint(a.off, 10) + ":" + strconv.FormatUint(a.size, 10)
}

// Params packs a kernel's uniform parameters: every field is a 4-byte u32,
// i32 or f32, in the order of the WGSL struct. The result is padded to 16
// bytes as uniform layout requires.
func Params(fields ...any) []byte {
	out := make([]byte, 0, 16*((4*len(fields)+15)/16))
	for _, f := range fields {
		var v uint32
		switch x := f.(type) {
		case uint32:
			v = x
		case int:
			v = uint32(int32(x))
		case int32:
			v = uint32(x)
		case float32:
			v = math.Float32bits(x)
		case float64:
			v = math.Float32bits(float32(x))
		default:
			panic(fmt.Sprintf("gpu.Params: unsupported field type %T", f))
		}
		out = binary.LittleEndian.AppendUint32(out, v)
	}
	for len(out)%16 != 0 || len(out) == 0 {
		out = append(out, 0)
	}
	return out
}

// bindEntry is a cached bind group with the uniform buffer it owns.
type bindEntry struct {
	group   *wgpu.BindGroup
	uniform *wgpu.Buffer
	usize   uint64
	buffers []uint64
	prev    *bindEntry
	next    *bindEntry
	key     string
}

// bindCache holds bind groups keyed by pipeline, arguments and uniform
// bytes, so a training step that repeats the same launches builds each bind
// group once. It is bounded (least recently used goes first) so that
// parameters that change every step cannot grow it without limit.
type bindCache struct {
	m          map[string]*bindEntry
	byBuf      map[uint64]map[string]struct{}
	head, tail *bindEntry
	max        int
	ledger     *Ledger
}

const bindCacheMax = 8192

func newBindCache() *bindCache {
	return &bindCache{m: map[string]*bindEntry{}, byBuf: map[uint64]map[string]struct{}{}, max: bindCacheMax}
}

func (c *bindCache) unlink(e *bindEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		c.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		c.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (c *bindCache) pushFront(e *bindEntry) {
	e.next = c.head
	if c.head != nil {
		c.head.prev = e
	}
	c.head = e
	if c.tail == nil {
		c.tail = e
	}
}

func (c *bindCache) remove(e *bindEntry) {
	c.unlink(e)
	delete(c.m, e.key)
	for _, id := range e.buffers {
		if s := c.byBuf[id]; s != nil {
			delete(s, e.key)
			if len(s) == 0 {
				delete(c.byBuf, id)
			}
		}
	}
	e.group.Release()
	if e.uniform != nil {
		e.uniform.Release()
		c.ledger.sub(CatCache, e.usize)
	}
}

func (c *bindCache) dropBuffer(id uint64) {
	for key := range c.byBuf[id] {
		if e, ok := c.m[key]; ok {
			c.remove(e)
		}
	}
}

func (c *bindCache) releaseAll() {
	for c.head != nil {
		c.remove(c.head)
	}
}

// bindGroup returns the cached bind group for a pipeline, its uniform bytes
// (nil when the kernel has no uniform) and its arguments, creating it on a
// miss. Argument kinds and sizes are checked against the pipeline and the
// device limits first, so a mistake names the kernel.
func (d *Device) bindGroup(p *Pipeline, params []byte, args []Arg) (*wgpu.BindGroup, error) {
	var key strings.Builder
	key.WriteString(p.key)
	key.WriteByte('#')
	key.Write(params)
	for _, a := range args {
		key.WriteByte('|')
		key.WriteString(a.key())
	}
	k := key.String()
	c := d.binds
	c.ledger = d.Ledger
	if e, ok := c.m[k]; ok {
		c.unlink(e)
		c.pushFront(e)
		return e.group, nil
	}
	nUniform := 0
	if len(p.Bindings) > 0 && p.Bindings[0] == BindUniform {
		nUniform = 1
	}
	if len(args)+nUniform != len(p.Bindings) {
		return nil, fmt.Errorf("%s: %d arguments given, kernel binds %d", p.Name, len(args), len(p.Bindings)-nUniform)
	}
	if nUniform == 1 && params == nil {
		return nil, fmt.Errorf("%s: kernel takes a uniform but no params were given", p.Name)
	}
	e := &bindEntry{key: k}
	entries := make([]wgpu.BindGroupEntry, 0, len(p.Bindings))
	if nUniform == 1 {
		u, err := d.dev.CreateBufferInit(&wgpu.BufferInitDescriptor{Label: p.Name + ":params", Contents: params,
			Usage: wgpu.BufferUsageUniform | wgpu.BufferUsageCopyDst})
		if err != nil {
			return nil, fmt.Errorf("%s: params: %w", p.Name, err)
		}
		e.uniform, e.usize = u, uint64(len(params))
		d.Ledger.add(CatCache, e.usize)
		entries = append(entries, wgpu.BindGroupEntry{Binding: 0, Buffer: u, Size: wgpu.WholeSize})
	}
	for i, a := range args {
		slot := i + nUniform
		kind := p.Bindings[slot]
		switch {
		case a.tex != nil:
			if kind != BindTexture && kind != BindStorageTexture && kind != BindStorageTextureRead {
				return nil, fmt.Errorf("%s: binding %d is a buffer slot, got texture %s", p.Name, slot, a.tex.Name)
			}
			entries = append(entries, wgpu.BindGroupEntry{Binding: uint32(slot), TextureView: a.tex.view})
		case a.buf != nil:
			if kind != BindRead && kind != BindReadWrite {
				return nil, fmt.Errorf("%s: binding %d is a texture slot, got buffer %s", p.Name, slot, a.buf.Name)
			}
			if a.buf.buf == nil {
				return nil, fmt.Errorf("%s: binding %d: buffer %s was released", p.Name, slot, a.buf.Name)
			}
			if a.size > d.Limits.MaxStorageBufferBindingSize {
				return nil, fmt.Errorf("%s: binding %d: %s binds %.1f MiB, over the device's maxStorageBufferBindingSize %.1f MiB",
					p.Name, slot, a.buf.Name, MiB(a.size), MiB(d.Limits.MaxStorageBufferBindingSize))
			}
			if a.off%uint64(d.Limits.MinStorageBufferOffsetAlignment) != 0 || a.off+a.size > a.buf.Size {
				return nil, fmt.Errorf("%s: binding %d: range [%d, %d) of %s is misaligned or out of bounds",
					p.Name, slot, a.off, a.off+a.size, a.buf.Name)
			}
			entries = append(entries, wgpu.BindGroupEntry{Binding: uint32(slot), Buffer: a.buf.buf, Offset: a.off, Size: a.size})
			e.buffers = append(e.buffers, a.buf.id)
		default:
			return nil, fmt.Errorf("%s: binding %d is empty", p.Name, slot)
		}
		if a.tex != nil {
			e.buffers = append(e.buffers, a.tex.id)
		}
	}
	g, err := d.dev.CreateBindGroup(&wgpu.BindGroupDescriptor{Label: p.Name, Layout: p.layout, Entries: entries})
	if err != nil {
		if e.uniform != nil {
			e.uniform.Release()
			d.Ledger.sub(CatCache, e.usize)
		}
		return nil, fmt.Errorf("%s: bind group: %w", p.Name, err)
	}
	e.group = g
	c.m[k] = e
	for _, id := range e.buffers {
		if c.byBuf[id] == nil {
			c.byBuf[id] = map[string]struct{}{}
		}
		c.byBuf[id][k] = struct{}{}
	}
	c.pushFront(e)
	for len(c.m) > c.max {
		c.remove(c.tail)
	}
	return g, nil
}
