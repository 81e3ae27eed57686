package checkpoints

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

func f32bytes(v ...float32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
	}
	return out
}

func sample(t testing.TB) (string, Header, []Tensor) {
	dir := t.TempDir()
	cfg, err := msgpack.Marshal(map[string]int{"d_model": 2})
	require.NoError(t, err)
	h := Header{Config: cfg, Stage: 2, Stages: 3, Step: 120, Tokens: 4096, RNG: []byte{1, 2, 3},
		Growth: []Growth{{Stage: 2, Step: 100, Operator: "mean", Position: "upper", Added: 2}},
		Meta:   map[string]string{"device": "lavapipe"}}
	ts := []Tensor{
		{Name: "tok_emb", DType: F32, Shape: []int{2, 3}, Group: Trainable, Data: f32bytes(1, 2, 3, 4, 5, 6)},
		{Name: "layers.0.attn.wq", DType: F16, Shape: []int{3}, Group: Frozen, Data: make([]byte, 8)},
		{Name: "adam.m.tok_emb", DType: F32, Shape: []int{2, 3}, Group: Optimizer, Data: f32bytes(0, 0, 0, 0, 0, 1)},
	}
	return filepath.Join(dir, "ckpt.msgpack"), h, ts
}

func TestRoundTrip(t *testing.T) {
	path, h, ts := sample(t)
	require.NoError(t, Write(path, h, ts))
	r, err := Open(path)
	require.NoError(t, err)
	defer r.Close()
	require.Equal(t, 2, r.Header.Stage)
	require.Equal(t, "mean", r.Header.Growth[0].Operator)
	require.NoError(t, r.Verify())
	for _, want := range ts {
		got, e, err := r.Read(want.Name)
		require.NoError(t, err)
		require.Equal(t, want.Data, got)
		require.Equal(t, want.Shape, e.Shape)
		require.Equal(t, want.Group, e.Group)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	require.Len(t, entries, 1, "no temporary file left behind")
}

func TestWriteRejectsInconsistentTensor(t *testing.T) {
	path, h, ts := sample(t)
	ts[0].Shape = []int{7}
	require.ErrorContains(t, Write(path, h, ts), "tok_emb")
	_, err := os.Stat(path)
	require.True(t, os.IsNotExist(err), "a failed write leaves nothing behind")
}

// TestCorruptions flips, truncates and rewrites parts of a valid file; each
// must give an error naming the problem, and none may panic.
func TestCorruptions(t *testing.T) {
	path, h, ts := sample(t)
	require.NoError(t, Write(path, h, ts))
	good, err := os.ReadFile(path)
	require.NoError(t, err)
	cases := map[string]func([]byte) []byte{
		"bad magic":       func(b []byte) []byte { b[0] = 'X'; return b },
		"newer version":   func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], Version+1); return b },
		"huge header":     func(b []byte) []byte { binary.LittleEndian.PutUint64(b[12:], 1<<40); return b },
		"header bit flip": func(b []byte) []byte { b[prefixLen+3] ^= 0x10; return b },
		"tensor bit flip": func(b []byte) []byte { b[len(b)-1] ^= 1; return b },
		"truncated":       func(b []byte) []byte { return b[:len(b)-10] },
		"empty":           func(b []byte) []byte { return nil },
	}
	want := map[string]string{"bad magic": "magic", "newer version": "newer", "huge header": "header length",
		"header bit flip": "checksum", "tensor bit flip": "checksum", "truncated": "past the end", "empty": "too short"}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			b := mutate(append([]byte(nil), good...))
			p := filepath.Join(t.TempDir(), "bad")
			require.NoError(t, os.WriteFile(p, b, 0o644))
			r, err := Open(p)
			if err == nil {
				err = r.Verify()
				r.Close()
			}
			require.ErrorContains(t, err, want[name])
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "nope"))
	require.ErrorContains(t, err, "nope")
}

func TestUnknownHeaderFieldRejected(t *testing.T) {
	path, _, _ := sample(t)
	head, err := msgpack.Marshal(map[string]any{"stage": 1, "from_the_future": true})
	require.NoError(t, err)
	var b []byte
	b = append(b, Magic...)
	b = binary.LittleEndian.AppendUint32(b, Version)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(head)))
	b = append(b, head...)
	b = binary.LittleEndian.AppendUint32(b, CRC(head))
	require.NoError(t, os.WriteFile(path, b, 0o644))
	_, err = Open(path)
	require.ErrorContains(t, err, "from_the_future")
}
