package step

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/step-gpu/step-gpu/checkpoints"
	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/nn/tokenizer"
)

// CheckpointDir is the folder of a run's checkpoints.
func CheckpointDir(runDir string) string { return filepath.Join(runDir, "checkpoints") }

// latestFile names the file that holds the newest checkpoint's name.
const latestFile = "LATEST"

func f32Bytes(v []float32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
	}
	return out
}

func bytesF32(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// Save writes a checkpoint of the trainer's whole state (weights, AdamW
// moments, step, tokens, data cursor, options, tokenizer) into the run's
// checkpoint folder, points LATEST at it and removes checkpoints beyond
// Opt.Keep. It returns the file's path.
func (t *Trainer) Save() (string, error) {
	dir := CheckpointDir(t.Opt.RunDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("save checkpoint: %w", err)
	}
	h, tensors, err := t.snapshot()
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("step-%08d.ckpt", t.Step)
	path := filepath.Join(dir, name)
	if err := checkpoints.Write(path, h, tensors); err != nil {
		return "", err
	}
	if err := writeAtomic(filepath.Join(dir, latestFile), []byte(name+"\n")); err != nil {
		return "", err
	}
	return path, prune(dir, t.Opt.Keep)
}

func (t *Trainer) snapshot() (checkpoints.Header, []checkpoints.Tensor, error) {
	cfgBytes, err := msgpack.Marshal(&t.Opt.Model)
	if err != nil {
		return checkpoints.Header{}, nil, err
	}
	optBytes, err := msgpack.Marshal(&t.Opt)
	if err != nil {
		return checkpoints.Header{}, nil, err
	}
	cursor, err := msgpack.Marshal(t.Data.Train.Cursor())
	if err != nil {
		return checkpoints.Header{}, nil, err
	}
	tok, err := t.Data.Tok.MarshalJSON()
	if err != nil {
		return checkpoints.Header{}, nil, err
	}
	h := checkpoints.Header{Config: cfgBytes, Train: optBytes, Stage: 1, Stages: 1, Step: t.Step, StageStep: t.Step,
		Tokens: t.Tokens, DataCursor: cursor, Tokenizer: tok,
		Meta: map[string]string{"device": t.D.Info.Name, "written": time.Now().UTC().Format(time.RFC3339)}}
	var tensors []checkpoints.Tensor
	for _, s := range t.Model.Specs() {
		p, err := t.Model.ReadParam(s.Name)
		if err != nil {
			return h, nil, err
		}
		tensors = append(tensors, checkpoints.Tensor{Name: s.Name, DType: checkpoints.F32, Shape: s.Shape,
			Group: checkpoints.Trainable, Data: f32Bytes(p)})
		for _, kind := range []string{"m", "v"} {
			st, err := t.Model.ReadState(kind, s.Name)
			if err != nil {
				return h, nil, err
			}
			tensors = append(tensors, checkpoints.Tensor{Name: "adam." + kind + "." + s.Name, DType: checkpoints.F32,
				Shape: s.Shape, Group: checkpoints.Optimizer, Data: f32Bytes(st)})
		}
	}
	return h, tensors, nil
}

// writeAtomic writes a small file through a temporary file and a rename.
func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// prune removes the oldest step-*.ckpt files beyond keep (0 keeps all).
func prune(dir string, keep int) error {
	if keep <= 0 {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "step-") && strings.HasSuffix(e.Name(), ".ckpt") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for len(names) > keep {
		if err := os.Remove(filepath.Join(dir, names[0])); err != nil {
			return err
		}
		names = names[1:]
	}
	return nil
}

// LatestCheckpoint returns the path of a run's newest checkpoint.
func LatestCheckpoint(runDir string) (string, error) {
	dir := CheckpointDir(runDir)
	b, err := os.ReadFile(filepath.Join(dir, latestFile))
	if err != nil {
		return "", fmt.Errorf("no checkpoint to resume in %s: %w", runDir, err)
	}
	return filepath.Join(dir, strings.TrimSpace(string(b))), nil
}

// Loaded is a checkpoint opened and checked against its own config.
type Loaded struct {
	R      *checkpoints.Reader
	Config nn.Config
	Opt    Options
	Tok    *tokenizer.Tokenizer
	Cursor int64
	// Layout is the stage's layout (frozen blocks, adapters); zero for a
	// vanilla run.
	Layout nn.Layout
}

// OpenCheckpoint opens a checkpoint and checks, before any GPU memory is
// allocated, that its header decodes and every parameter tensor has the
// shape its config implies. Close L.R when done.
func OpenCheckpoint(path string) (*Loaded, error) {
	r, err := checkpoints.Open(path)
	if err != nil {
		return nil, err
	}
	l := &Loaded{R: r}
	fail := func(format string, args ...any) (*Loaded, error) {
		r.Close()
		return nil, fmt.Errorf("checkpoint %s: %s", path, fmt.Sprintf(format, args...))
	}
	if err := msgpack.Unmarshal(r.Header.Config, &l.Config); err != nil {
		return fail("config: %v", err)
	}
	if err := l.Config.Validate(); err != nil {
		return fail("%v", err)
	}
	if len(r.Header.Train) > 0 {
		if err := msgpack.Unmarshal(r.Header.Train, &l.Opt); err != nil {
			return fail("training options: %v", err)
		}
	}
	if len(r.Header.DataCursor) > 0 {
		if err := msgpack.Unmarshal(r.Header.DataCursor, &l.Cursor); err != nil {
			return fail("data cursor: %v", err)
		}
	}
	if l.Tok, err = tokenizer.Unmarshal(r.Header.Tokenizer); err != nil {
		return fail("tokenizer: %v", err)
	}
	if l.Tok.VocabSize() != l.Config.V {
		return fail("tokenizer has %d tokens, config says vocab %d", l.Tok.VocabSize(), l.Config.V)
	}
	for _, s := range l.Config.ParamSpecs() {
		e, ok := r.Header.Find(s.Name)
		if !ok {
			return fail("missing tensor %s", s.Name)
		}
		if fmt.Sprint(e.Shape) != fmt.Sprint(s.Shape) || e.DType != checkpoints.F32 {
			return fail("tensor %s is %s %v, config needs f32 %v", s.Name, e.DType, e.Shape, s.Shape)
		}
	}
	return l, nil
}

// SameModel returns an error naming the first field where two configs
// differ in a way that changes the model's tensors or its function.
func SameModel(a, b nn.Config) error {
	fields := []struct {
		name string
		x, y float64
	}{{"vocab_size", float64(a.V), float64(b.V)}, {"d_model", float64(a.C), float64(b.C)}, {"n_layers", float64(a.L), float64(b.L)},
		{"n_heads", float64(a.NH), float64(b.NH)}, {"d_ff", float64(a.H), float64(b.H)}, {"seq_len", float64(a.T), float64(b.T)},
		{"batch", float64(a.B), float64(b.B)}, {"rope_theta", a.RoPE, b.RoPE}, {"norm_eps", a.NormEps, b.NormEps}}
	for _, f := range fields {
		if f.x != f.y {
			return fmt.Errorf("%s is %g in the checkpoint but %g in this run", f.name, f.x, f.y)
		}
	}
	return nil
}

// LoadWeights uploads every parameter (and, with optimizer set, the AdamW
// moments) of a checked checkpoint into the trainer's model.
func LoadWeights(l *Loaded, m *nn.Model, optimizer bool) error {
	for _, s := range m.Specs() {
		b, _, err := l.R.Read(s.Name)
		if err != nil {
			return err
		}
		if err := m.WriteParam(s.Name, bytesF32(b)); err != nil {
			return err
		}
		if !optimizer {
			continue
		}
		for _, kind := range []string{"m", "v"} {
			b, e, err := l.R.Read("adam." + kind + "." + s.Name)
			if err != nil {
				return err
			}
			if fmt.Sprint(e.Shape) != fmt.Sprint(s.Shape) {
				return fmt.Errorf("checkpoint %s: optimizer state %s has shape %v, want %v", l.R.Path(), e.Name, e.Shape, s.Shape)
			}
			if err := m.WriteState(kind, s.Name, bytesF32(b)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Resume restores the trainer from a checked checkpoint: weights, AdamW
// moments, step, tokens and the data cursor, so that the run continues with
// exactly the losses an uninterrupted run would have had.
func (t *Trainer) Resume(l *Loaded) error {
	if err := SameModel(l.Config, t.Opt.Model); err != nil {
		return fmt.Errorf("resume from %s: %w", l.R.Path(), err)
	}
	if err := LoadWeights(l, t.Model, true); err != nil {
		return err
	}
	if err := t.Data.Train.SetCursor(l.Cursor); err != nil {
		return err
	}
	t.Step = l.R.Header.Step
	t.Tokens = l.R.Header.Tokens
	return nil
}
