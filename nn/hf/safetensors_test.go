package hf

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// rawSafetensors builds a safetensors file from a header value (marshalled
// as is) and data bytes, so tests can write malformed files.
func rawSafetensors(t *testing.T, header any, data []byte) []byte {
	t.Helper()
	hb, err := json.Marshal(header)
	require.NoError(t, err)
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(hb)))
	out = append(out, hb...)
	return append(out, data...)
}

func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "x.safetensors")
	require.NoError(t, os.WriteFile(path, b, 0o644))
	return path
}

type entry = map[string]any

func TestSafetensorsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	in := []Tensor{
		{Name: "b.matrix", Shape: []int{2, 3}, Data: []float32{1, -2, 3.5, float32(math.Inf(-1)), 1e-40, -0}},
		{Name: "a.scalar", Shape: []int{}, Data: []float32{7}},
		{Name: "c.empty", Shape: []int{0, 5}, Data: []float32{}},
		{Name: "d.nan", Shape: []int{1}, Data: []float32{float32(math.NaN())}},
	}
	require.NoError(t, WriteSafetensors(path, in, map[string]string{"format": "pt"}))
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Zero(t, (8+binary.LittleEndian.Uint64(raw))%8, "data starts 8-byte aligned")

	f, err := OpenSafetensors(path)
	require.NoError(t, err)
	defer f.Close()
	require.Equal(t, map[string]string{"format": "pt"}, f.Metadata)
	require.Equal(t, []string{"a.scalar", "b.matrix", "c.empty", "d.nan"}, f.Names())
	for _, want := range in {
		got, info, err := f.Read(want.Name)
		require.NoError(t, err)
		require.Equal(t, "F32", info.DType)
		require.Equal(t, want.Shape, info.Shape)
		require.Len(t, got, len(want.Data))
		for i := range got {
			require.Equalf(t, math.Float32bits(want.Data[i]), math.Float32bits(got[i]), "%s[%d] bit for bit", want.Name, i)
		}
	}
	_, _, err = f.Read("nope")
	require.ErrorContains(t, err, "no tensor nope")

	require.ErrorContains(t, WriteSafetensors(path, []Tensor{{Name: "x", Shape: []int{3}, Data: []float32{1}}}, nil), "1 values for shape [3]")
	require.ErrorContains(t, WriteSafetensors(path, []Tensor{in[1], in[1]}, nil), "twice")
}

func TestSafetensorsMalformed(t *testing.T) {
	f32 := func(n int) []byte { return make([]byte, 4*n) }
	good := rawSafetensors(t, entry{"w": entry{"dtype": "F32", "shape": []int{2, 2}, "data_offsets": []int{0, 16}}}, f32(4))
	hugeLen := append([]byte{}, good...)
	binary.LittleEndian.PutUint64(hugeLen, 1<<40)
	pastEnd := append([]byte{}, good...)
	binary.LittleEndian.PutUint64(pastEnd, uint64(len(good)))
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"empty file", nil, "too short"},
		{"truncated data", good[:len(good)-3], "outside the 13 data bytes"},
		{"extra data", append(append([]byte{}, good...), 0, 0, 0, 0), "cover 16 data bytes but the file holds 20"},
		{"truncated header", good[:20], "exceeds the 12 bytes"},
		{"header length beyond limit", hugeLen, "exceeds the limit"},
		{"header length past end", pastEnd, "exceeds the"},
		{"not json", append(binary.LittleEndian.AppendUint64(nil, 4), "abcd"...), "not a JSON object"},
		{"json array", rawSafetensors(t, []int{1}, nil), "not a JSON object"},
		{"trailing garbage", append(binary.LittleEndian.AppendUint64(nil, 4), "{}}x"...), "after the JSON object"},
		{"overlapping offsets", rawSafetensors(t, entry{
			"a": entry{"dtype": "F32", "shape": []int{2}, "data_offsets": []int{0, 8}},
			"b": entry{"dtype": "F32", "shape": []int{2}, "data_offsets": []int{4, 12}}}, f32(3)), "overlap"},
		{"hole", rawSafetensors(t, entry{
			"a": entry{"dtype": "F32", "shape": []int{1}, "data_offsets": []int{0, 4}},
			"b": entry{"dtype": "F32", "shape": []int{1}, "data_offsets": []int{8, 12}}}, f32(3)), "no tensor covers data bytes [4, 8)"},
		{"wrong byte length", rawSafetensors(t, entry{"w": entry{"dtype": "F32", "shape": []int{3}, "data_offsets": []int{0, 16}}}, f32(4)),
			"needs 12 bytes but its offsets span 16"},
		{"unknown dtype", rawSafetensors(t, entry{"w": entry{"dtype": "F24", "shape": []int{1}, "data_offsets": []int{0, 3}}}, make([]byte, 3)),
			`unknown dtype "F24"`},
		{"offsets out of range", rawSafetensors(t, entry{"w": entry{"dtype": "F32", "shape": []int{4}, "data_offsets": []int{0, 16}}}, f32(2)),
			"outside the 8 data bytes"},
		{"reversed offsets", rawSafetensors(t, entry{"w": entry{"dtype": "F32", "shape": []int{0}, "data_offsets": []int{8, 4}}}, f32(2)),
			"outside the 8 data bytes"},
		{"negative dimension", rawSafetensors(t, entry{"w": entry{"dtype": "F32", "shape": []int{-1}, "data_offsets": []int{0, 4}}}, f32(1)),
			"negative dimension"},
		{"overflowing shape", rawSafetensors(t, entry{"w": entry{"dtype": "F32", "shape": []int{1 << 40, 1 << 40}, "data_offsets": []int{0, 4}}}, f32(1)),
			"overflows"},
		{"no shape", rawSafetensors(t, entry{"w": entry{"dtype": "F32", "data_offsets": []int{0, 4}}}, f32(1)), "no shape"},
		{"empty name", rawSafetensors(t, entry{"": entry{"dtype": "F32", "shape": []int{1}, "data_offsets": []int{0, 4}}}, f32(1)), "empty name"},
		{"bad metadata", rawSafetensors(t, entry{"__metadata__": entry{"n": 1}}, nil), "must map strings to strings"},
		{"bad entry", rawSafetensors(t, entry{"w": "F32"}, nil), `tensor "w"`},
		{"duplicate name", append(binary.LittleEndian.AppendUint64(nil, 123),
			`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`...),
			`"w" appears twice`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "duplicate name" {
				n := len(c.file) - 8
				binary.LittleEndian.PutUint64(c.file, uint64(n))
				c.file = append(c.file, f32(1)...)
			}
			f, err := OpenSafetensors(writeTemp(t, c.file))
			if err == nil {
				f.Close()
			}
			require.ErrorContains(t, err, c.want)
		})
	}
	f, err := OpenSafetensors(writeTemp(t, good))
	require.NoError(t, err, "the unmodified file opens")
	f.Close()
}

// TestSafetensorsHalf checks F16 and BF16 decoding on hand-made bits, and
// every one of the 65,536 halves against a formula written independently.
func TestSafetensorsHalf(t *testing.T) {
	f16 := []uint16{0x3c00, 0xc000, 0x7bff, 0x0001, 0x8400, 0x7c00, 0x0000, 0x8000}
	want16 := []float32{1, -2, 65504, 1.0 / (1 << 24), -1.0 / (1 << 14), float32(math.Inf(1)), 0, float32(math.Copysign(0, -1))}
	bf16 := []uint16{0x3f80, 0xc040, 0x0001}
	wantBF := []float32{1, -3, math.Float32frombits(0x00010000)}
	data := []byte{}
	for _, h := range append(append([]uint16{}, f16...), bf16...) {
		data = binary.LittleEndian.AppendUint16(data, h)
	}
	data = append(data, 1, 2, 3, 4)
	path := writeTemp(t, rawSafetensors(t, entry{
		"h": entry{"dtype": "F16", "shape": []int{len(f16)}, "data_offsets": []int{0, 2 * len(f16)}},
		"b": entry{"dtype": "BF16", "shape": []int{len(bf16)}, "data_offsets": []int{2 * len(f16), 2 * (len(f16) + len(bf16))}},
		"i": entry{"dtype": "I32", "shape": []int{1}, "data_offsets": []int{2 * (len(f16) + len(bf16)), 2*(len(f16)+len(bf16)) + 4}},
	}, data))
	f, err := OpenSafetensors(path)
	require.NoError(t, err)
	defer f.Close()
	for name, want := range map[string][]float32{"h": want16, "b": wantBF} {
		got, _, err := f.Read(name)
		require.NoError(t, err)
		for i := range want {
			require.Equalf(t, math.Float32bits(want[i]), math.Float32bits(got[i]), "%s[%d]", name, i)
		}
	}
	_, _, err = f.Read("i")
	require.ErrorContains(t, err, "only F32, F16 and BF16")

	for h := range 1 << 16 {
		sign := 1.0
		if h&0x8000 != 0 {
			sign = -1
		}
		e, m := (h>>10)&0x1f, h&0x3ff
		got := halfToFloat(uint16(h))
		switch {
		case e == 0x1f && m != 0:
			require.True(t, math.IsNaN(float64(got)), "half %04x is NaN", h)
		case e == 0x1f:
			require.Equal(t, math.Inf(int(sign)), float64(got))
		case e == 0:
			require.Equal(t, sign*math.Ldexp(float64(m), -24), float64(got), "half %04x", h)
			require.Equal(t, math.Signbit(sign), math.Signbit(float64(got)), "half %04x sign", h)
		default:
			require.Equal(t, sign*math.Ldexp(float64(m+1024), e-25), float64(got), "half %04x", h)
		}
	}
}

// FuzzOpenSafetensors checks that no byte string makes the reader panic or
// accept a header that does not tile the file.
func FuzzOpenSafetensors(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.safetensors")
	if err := WriteSafetensors(path, []Tensor{{Name: "w", Shape: []int{2}, Data: []float32{1, 2}}}, map[string]string{"format": "pt"}); err != nil {
		f.Fatal(err)
	}
	seed, _ := os.ReadFile(path)
	f.Add(seed)
	f.Add(seed[:12])
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "f.safetensors")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := OpenSafetensors(p)
		if err != nil {
			return
		}
		defer s.Close()
		for _, n := range s.Names() {
			s.Read(n)
		}
	})
}
