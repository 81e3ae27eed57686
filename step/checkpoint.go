package step

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/step-gpu/step-gpu/checkpoints"
	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/nn/tokenizer"
	"github.com/step-gpu/step-gpu/shaders"
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
// moments, step, stage, tokens, data cursor, options, tokenizer) into the
// run's checkpoint folder as step-N.ckpt, points LATEST at it and removes
// step checkpoints beyond Opt.Keep. It returns the file's path.
func (t *Trainer) Save() (string, error) {
	path, err := t.saveAs(fmt.Sprintf("step-%08d.ckpt", t.Step))
	if err != nil {
		return "", err
	}
	return path, prune(CheckpointDir(t.Opt.RunDir), t.Opt.Keep)
}

// SaveStage writes the model a growth just made, before its first step, as
// stage-N.ckpt in the run's checkpoint folder (never pruned), and points
// LATEST at it. It returns the file's path.
func (t *Trainer) SaveStage() (string, error) { return t.saveAs(fmt.Sprintf("stage-%d.ckpt", t.Stage)) }

// saveAs writes the trainer's checkpoint under a name in the run's
// checkpoint folder and points LATEST at it.
func (t *Trainer) saveAs(name string) (string, error) {
	dir := CheckpointDir(t.Opt.RunDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("save checkpoint: %w", err)
	}
	h, tensors, err := t.snapshot()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	if err := checkpoints.Write(path, h, tensors); err != nil {
		return "", err
	}
	return path, writeAtomic(filepath.Join(dir, latestFile), []byte(name+"\n"))
}

func (t *Trainer) snapshot() (checkpoints.Header, []checkpoints.Tensor, error) {
	m := t.Model
	cfgBytes, err := msgpack.Marshal(&m.Cfg)
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
	h := checkpoints.Header{Config: cfgBytes, Train: optBytes, Stage: t.Stage, Stages: t.Stages(), Step: t.Step,
		StageStep: t.StageStep, Tokens: t.Tokens, DataCursor: cursor, Tokenizer: tok, Growth: t.History,
		Meta: map[string]string{"device": t.D.Info.Name, "written": time.Now().UTC().Format(time.RFC3339)}}
	if lo := m.Layout(); lo.FrozenCount() > 0 {
		if h.Layout, err = msgpack.Marshal(&lo); err != nil {
			return h, nil, err
		}
	}
	tensors, err := ModelTensors(m, true)
	return h, tensors, err
}

// ModelTensors returns the checkpoint tensors of a model: trained tensors
// (group trainable, adapters group lora) as f32, with their AdamW moments
// when optimizer is set, and frozen tensors (group frozen) as stored on the
// device: half matrices as f16, the rest f32.
func ModelTensors(m *nn.Model, optimizer bool) ([]checkpoints.Tensor, error) {
	var tensors []checkpoints.Tensor
	for _, s := range m.Specs() {
		p, err := m.ReadParam(s.Name)
		if err != nil {
			return nil, err
		}
		group := checkpoints.Trainable
		if s.LoRA {
			group = checkpoints.LoRA
		}
		tensors = append(tensors, checkpoints.Tensor{Name: s.Name, DType: checkpoints.F32, Shape: s.Shape,
			Group: group, Data: f32Bytes(p)})
		if !optimizer {
			continue
		}
		for _, kind := range []string{"m", "v"} {
			st, err := m.ReadState(kind, s.Name)
			if err != nil {
				return nil, err
			}
			tensors = append(tensors, checkpoints.Tensor{Name: "adam." + kind + "." + s.Name, DType: checkpoints.F32,
				Shape: s.Shape, Group: checkpoints.Optimizer, Data: f32Bytes(st)})
		}
	}
	for _, s := range m.FrozenSpecs() {
		n := s.Numel()
		if m.Format(s.Name) == shaders.Half {
			words, err := m.Param(s.Name).ReadU32(0, (n+1)/2)
			if err != nil {
				return nil, err
			}
			b := make([]byte, 4*len(words))
			for i, w := range words {
				binary.LittleEndian.PutUint32(b[4*i:], w)
			}
			tensors = append(tensors, checkpoints.Tensor{Name: s.Name, DType: checkpoints.F16, Shape: s.Shape,
				Group: checkpoints.Frozen, Data: b[:2*n]})
			continue
		}
		p, err := m.ReadParam(s.Name)
		if err != nil {
			return nil, err
		}
		tensors = append(tensors, checkpoints.Tensor{Name: s.Name, DType: checkpoints.F32, Shape: s.Shape,
			Group: checkpoints.Frozen, Data: f32Bytes(p)})
	}
	return tensors, nil
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

// Final returns the config of the run's final model: the checkpoint's own
// config for vanilla runs, the last stage's for STEP runs.
func (l *Loaded) Final() nn.Config {
	if len(l.R.Header.Train) > 0 && l.Opt.Model.L > 0 {
		return l.Opt.Model
	}
	return l.Config
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
	if len(r.Header.Layout) > 0 {
		if err := msgpack.Unmarshal(r.Header.Layout, &l.Layout); err != nil {
			return fail("layout: %v", err)
		}
		if err := l.Layout.Validate(l.Config); err != nil {
			return fail("%v", err)
		}
	}
	trained, frozen := l.Config.StagedSpecs(l.Layout)
	for _, set := range []struct {
		specs  []nn.ParamSpec
		frozen bool
	}{{trained, false}, {frozen, true}} {
		for _, s := range set.specs {
			e, ok := r.Header.Find(s.Name)
			if !ok {
				return fail("missing tensor %s", s.Name)
			}
			want := checkpoints.F32
			if set.frozen && len(s.Shape) == 2 && l.Layout.Format == shaders.Half {
				want = checkpoints.F16
			}
			if fmt.Sprint(e.Shape) != fmt.Sprint(s.Shape) || e.DType != want {
				return fail("tensor %s is %s %v, config needs %s %v", s.Name, e.DType, e.Shape, want, s.Shape)
			}
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

// LoadWeights uploads every tensor of a checked checkpoint into a model of
// its config and layout (f16 frozen weights are restored bit for bit) and,
// with optimizer set, the AdamW moments of the trained ones.
func LoadWeights(l *Loaded, m *nn.Model, optimizer bool) error {
	if err := SameModel(l.Config, m.Cfg); err != nil && !sameButBatch(l.Config, m.Cfg) {
		return fmt.Errorf("checkpoint %s: %w", l.R.Path(), err)
	}
	for _, s := range append(append([]nn.ParamSpec(nil), m.Specs()...), m.FrozenSpecs()...) {
		b, e, err := l.R.Read(s.Name)
		if err != nil {
			return err
		}
		v, err := tensorF32(b, e)
		if err != nil {
			return err
		}
		if err := m.WriteParam(s.Name, v); err != nil {
			return err
		}
		if !optimizer || !slices.ContainsFunc(m.Specs(), func(x nn.ParamSpec) bool { return x.Name == s.Name }) {
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

// sameButBatch reports whether two configs differ at most in batch size
// (evaluation and sampling load weights into batch-1 models).
func sameButBatch(a, b nn.Config) bool {
	a.B = b.B
	return SameModel(a, b) == nil
}

// LoadModel replaces the trainer's model with the checkpoint's, as it was
// trained (its depth, frozen blocks and adapters), and loads its weights
// without the optimizer state: for evaluation.
func (t *Trainer) LoadModel(l *Loaded) error { return t.loadModel(l, false) }

func (t *Trainer) loadModel(l *Loaded, optimizer bool) error {
	lo := l.Layout
	lo.Recompute = t.Opt.Recompute
	if lo.FrozenCount() > 0 || l.Config.L != t.Model.Cfg.L {
		m, err := nn.NewStagedModel(t.D, l.Config, lo, t.Opt.Seed)
		if err != nil {
			return fmt.Errorf("allocate the stage %d model: %w", l.R.Header.Stage, err)
		}
		t.Model.Release()
		t.Model = m
	}
	return LoadWeights(l, t.Model, optimizer)
}

// Resume restores the trainer from a checked checkpoint: the model of the
// checkpoint's stage (grown and frozen as it was), weights, AdamW moments,
// step, stage position, growth history, tokens and the data cursor, so that
// the run continues with exactly the losses an uninterrupted run would have
// had. The run's final model and stage plan must be the checkpoint's.
func (t *Trainer) Resume(l *Loaded) error {
	h := l.R.Header
	fail := func(format string, args ...any) error {
		return fmt.Errorf("resume from %s: %s", l.R.Path(), fmt.Sprintf(format, args...))
	}
	if err := SameModel(l.Final(), t.Opt.Model); err != nil {
		return fail("%v", err)
	}
	if h.Stages != t.Stages() || fmt.Sprint(l.Opt.Stages) != fmt.Sprint(t.Opt.Stages) {
		return fail("the checkpoint's run has %d stage(s) %v, this run asks for %d %v", h.Stages, l.Opt.Stages,
			t.Stages(), t.Opt.Stages)
	}
	if h.Stage < 1 || h.Stage > t.Stages() {
		return fail("stage %d outside 1..%d", h.Stage, t.Stages())
	}
	if err := t.loadModel(l, true); err != nil {
		return fail("%v", err)
	}
	if err := t.Data.Train.SetCursor(l.Cursor); err != nil {
		return err
	}
	t.Step, t.Tokens = h.Step, h.Tokens
	t.Stage, t.StageStep, t.History = h.Stage, h.StageStep, h.Growth
	return nil
}
