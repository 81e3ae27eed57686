package checkpoints

import (
	"fmt"
	"hash/crc32"

	"github.com/vmihailenco/msgpack/v5"
)

// Magic opens every checkpoint file.
const Magic = "STEPGPU\x00"

// Version is the format version this package writes and the newest it
// reads. Version 2 added Header.Layout (STEP stages); version 1 files read
// as vanilla runs.
const Version uint32 = 2

// prefixLen is magic (8) + version (4) + header length (8).
const prefixLen = 20

// MaxHeaderBytes bounds the header a reader will allocate for.
const MaxHeaderBytes = 256 << 20

// dataAlign is the alignment of every tensor's bytes in the file.
const dataAlign = 64

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC returns the CRC-32C (Castagnoli) of b, the checksum every tensor and
// the header carry.
func CRC(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// DType is a tensor's element type in the file.
type DType string

// The element types a checkpoint may hold.
const (
	F32 DType = "f32" // little-endian IEEE float32
	F16 DType = "f16" // IEEE half, two per u32 word as WGSL's pack2x16float packs them
	U32 DType = "u32" // little-endian uint32
	U8  DType = "u8"  // raw bytes
)

// Size returns the bytes per element, and false for an unknown dtype.
func (d DType) Size() (int, bool) {
	switch d {
	case F32, U32:
		return 4, true
	case F16:
		return 2, true
	case U8:
		return 1, true
	}
	return 0, false
}

// Group says what a tensor is, for totals in `step-gpu inspect`.
type Group string

// The tensor groups.
const (
	Trainable Group = "trainable"
	Frozen    Group = "frozen"
	LoRA      Group = "lora"
	Optimizer Group = "optimizer"
	Other     Group = "other"
)

// TensorEntry is one row of the tensor table.
type TensorEntry struct {
	Name   string `msgpack:"name"`
	DType  DType  `msgpack:"dtype"`
	Shape  []int  `msgpack:"shape"`
	Group  Group  `msgpack:"group"`
	Offset uint64 `msgpack:"offset"` // from the start of the data section
	Length uint64 `msgpack:"length"`
	CRC32C uint32 `msgpack:"crc32c"`
}

// Numel returns the element count implied by the shape.
func (t TensorEntry) Numel() (uint64, error) {
	n := uint64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return 0, fmt.Errorf("tensor %s: negative dimension %d", t.Name, d)
		}
		if d != 0 && n > (1<<62)/uint64(d) {
			return 0, fmt.Errorf("tensor %s: shape %v overflows", t.Name, t.Shape)
		}
		n *= uint64(d)
	}
	return n, nil
}

// Growth records one growth event of a STEP run.
type Growth struct {
	Stage    int               `msgpack:"stage"`    // stage that starts with this growth (2..K)
	Step     int               `msgpack:"step"`     // global step at which it happened
	Operator string            `msgpack:"operator"` // mean, copy, identity, stack
	Position string            `msgpack:"position"` // upper, intermediate, lower, random
	Added    int               `msgpack:"added"`    // layers inserted
	Renames  map[string]string `msgpack:"renames"`  // old layer name prefix -> new
}

// Header is everything in a checkpoint but the tensor bytes.
type Header struct {
	// Config is the model config as msgpack, decoded by package nn.
	Config msgpack.RawMessage `msgpack:"config"`
	// Train is the training configuration (schedule, optimizer), as msgpack.
	Train msgpack.RawMessage `msgpack:"train"`
	// Stage is the 1-based STEP stage (1 for vanilla runs) and Stages the total.
	Stage  int `msgpack:"stage"`
	Stages int `msgpack:"stages"`
	// Growth is the history of growth events so far.
	Growth []Growth `msgpack:"growth"`
	// Layout is the stage's model layout (which blocks are frozen, the
	// adapters, the frozen weight format) as msgpack, decoded by package
	// nn; empty for vanilla runs. Since version 2.
	Layout msgpack.RawMessage `msgpack:"layout"`
	// Step is the number of optimizer steps done; StageStep those of this stage.
	Step      int `msgpack:"step"`
	StageStep int `msgpack:"stage_step"`
	// Tokens is the number of training tokens consumed.
	Tokens int64 `msgpack:"tokens"`
	// RNG is the state of the run's random generators.
	RNG []byte `msgpack:"rng"`
	// DataCursor is the loader's position, opaque to this package.
	DataCursor msgpack.RawMessage `msgpack:"data_cursor"`
	// Tokenizer is the tokenizer file, embedded so a checkpoint is self-contained.
	Tokenizer []byte `msgpack:"tokenizer"`
	// Meta holds free-form facts (step-gpu version, device, date).
	Meta map[string]string `msgpack:"meta"`
	// Tensors is the tensor table.
	Tensors []TensorEntry `msgpack:"tensors"`
}

// Find returns the table entry with the given name.
func (h *Header) Find(name string) (TensorEntry, bool) {
	for _, t := range h.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return TensorEntry{}, false
}
