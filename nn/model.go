package nn

import (
	"fmt"
	"strings"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/shaders"
)

// Model is a LLaMA-style model resident on the GPU: parameters, gradients,
// AdamW moments, the activations one micro-batch saves for the backward, and
// the scratch buffers of a step. Every buffer is allocated once in NewModel
// and counted in the device's ledger under its category.
type Model struct {
	D   *gpu.Device
	Cfg Config

	layout Layout
	specs  []ParamSpec                     // trained: gradients and AdamW state
	frozen []ParamSpec                     // frozen blocks' tensors (Layout)
	wf     map[string]shaders.WeightFormat // storage format of each frozen tensor
	params map[string]*gpu.Buffer          // CatParams (adapters: CatLoRA)
	grads  map[string]*gpu.Buffer          // CatGrads
	m, v   map[string]*gpu.Buffer          // CatOptState

	acts    []layerBuffers // per block, saved for the backward
	xf      *gpu.Buffer    // (N, C) residual stream after the last block
	hf      *gpu.Buffer    // (N, C) final norm output
	rstdf   *gpu.Buffer    // (N)
	logits  *gpu.Buffer    // (rowsPerChunk, V), overwritten by dlogits
	losses  *gpu.Buffer    // (N)
	lossSum *gpu.Buffer    // (1) scaled loss sum of the last micro-batch
	lossAcc *gpu.Buffer    // (1) sum of lossSum over the micro-batches of a step
	hfChunk *gpu.Buffer    // (rowsPerChunk, C)
	dChunk  *gpu.Buffer    // (rowsPerChunk, C)
	chunk   int            // logits rows per chunk

	// Inputs of one micro-batch.
	tokens, targets, offsets, positions *gpu.Buffer

	// Backward scratch.
	dx, dx2, dh, dq, dk, dv, datt, tmp *gpu.Buffer // (N, C)
	ds, dg, du                         *gpu.Buffer // (N, H)

	// Frozen layers: adapted names the linear maps with adapters; wtmp
	// (the largest frozen matrix that needs it, f32) holds a frozen weight
	// widened and merged with its adapter, gtmp (the largest adapted
	// matrix) an adapted map's weight gradient, loraSB (max(C, H), R) and
	// loraSA (R, max(C, H)) an adapter's scaled B and A, and dgain (C) the
	// frozen RMSNorm gains' gradients (the kernel always produces one).
	adapted                    map[string]bool
	wtmp, gtmp, loraSB, loraSA *gpu.Buffer
	dgain                      *gpu.Buffer

	// Optimizer scratch.
	partials, clip, hyper *gpu.Buffer
	normSlots             map[string]int
	nPartials             int

	all []*gpu.Buffer
	// inference is set for models without gradients, optimizer state or
	// backward scratch (evaluation and sampling).
	inference bool
	// shared is set for a sampler that uses another model's weights
	// (NewSampler): it neither allocates nor frees them.
	shared bool
}

// layerBuffers are the activations of one block that the backward reads.
type layerBuffers struct {
	x, h1, q, k, v, att, x2, h2 *gpu.Buffer // (N, C); q, k after RoPE
	rstd1, rstd2                *gpu.Buffer // (N)
	lse                         *gpu.Buffer // (B, NH, T)
	g, u, s                     *gpu.Buffer // (N, H)
}

// NewModel allocates every buffer of the model on d and initialises the
// parameters from seed (nn.InitTensor). It fails with the tensor's name and
// the ledger's total when an allocation does not fit the device.
func NewModel(d *gpu.Device, cfg Config, seed uint64) (*Model, error) {
	return newModel(d, cfg, Layout{}, seed, false)
}

// NewStagedModel allocates a model whose blocks are frozen or trained as
// the layout says (a STEP stage) and initialises every tensor from seed;
// the caller overwrites the frozen ones with the grown weights.
func NewStagedModel(d *gpu.Device, cfg Config, lo Layout, seed uint64) (*Model, error) {
	return newModel(d, cfg, lo, seed, false)
}

// NewInferenceModel allocates a model for forward passes only: parameters
// and activations, no gradients, optimizer state or backward scratch. The
// layout lets it hold a staged checkpoint as trained (frozen weights in
// their format, adapters unmerged); pass Layout{} for a vanilla one.
func NewInferenceModel(d *gpu.Device, cfg Config, lo Layout) (*Model, error) {
	return newModel(d, cfg, lo, 1, true)
}

func newModel(d *gpu.Device, cfg Config, lo Layout, seed uint64, inference bool) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := lo.Validate(cfg); err != nil {
		return nil, err
	}
	m := &Model{D: d, Cfg: cfg, layout: lo, params: map[string]*gpu.Buffer{}, inference: inference,
		grads: map[string]*gpu.Buffer{}, m: map[string]*gpu.Buffer{}, v: map[string]*gpu.Buffer{},
		wf: map[string]shaders.WeightFormat{}, adapted: map[string]bool{}}
	m.specs, m.frozen = cfg.StagedSpecs(lo)
	for _, s := range m.frozen {
		m.wf[s.Name] = shaders.F32
		if len(s.Shape) == 2 {
			m.wf[s.Name] = lo.Format
		}
	}
	if err := m.alloc(); err != nil {
		m.Release()
		return nil, err
	}
	for _, s := range append(append([]ParamSpec(nil), m.specs...), m.frozen...) {
		if err := m.WriteParam(s.Name, InitTensor(s, seed)); err != nil {
			m.Release()
			return nil, err
		}
	}
	return m, nil
}

func (m *Model) buf(name string, cat gpu.Category, n int) (*gpu.Buffer, error) {
	return m.bufBytes(name, cat, uint64(4*n))
}

func (m *Model) bufBytes(name string, cat gpu.Category, bytes uint64) (*gpu.Buffer, error) {
	b, err := m.D.NewBuffer(name, cat, bytes)
	if err != nil {
		return nil, err
	}
	m.all = append(m.all, b)
	return b, nil
}

func (m *Model) alloc() error {
	c := m.Cfg
	N := c.B * c.T
	var err error
	must := func(name string, cat gpu.Category, n int) *gpu.Buffer {
		if err != nil {
			return nil
		}
		var b *gpu.Buffer
		b, err = m.buf(name, cat, n)
		return b
	}
	var sizes []int
	var names []string
	for _, s := range m.frozen {
		if err == nil && !m.shared {
			m.params[s.Name], err = m.bufBytes(s.Name, gpu.CatParams, m.wf[s.Name].Bytes(s.Numel()))
		}
	}
	for _, s := range m.specs {
		n := s.Numel()
		cat := gpu.CatParams
		if s.LoRA {
			cat = gpu.CatLoRA
		}
		if !m.shared {
			m.params[s.Name] = must(s.Name, cat, n)
		}
		if s.LoRA && strings.HasSuffix(s.Name, ".lora_a") {
			m.adapted[strings.TrimSuffix(s.Name, ".lora_a")] = true
		}
		if !m.inference {
			m.grads[s.Name] = must("grad."+s.Name, gpu.CatGrads, n)
			m.m[s.Name] = must("adam_m."+s.Name, gpu.CatOptState, n)
			m.v[s.Name] = must("adam_v."+s.Name, gpu.CatOptState, n)
		}
		sizes = append(sizes, n)
		names = append(names, s.Name)
	}
	var shared *layerBuffers // with Recompute: one set for every block
	for l := range c.L {
		p := fmt.Sprintf("act.%d.", l)
		if shared != nil {
			a := *shared
			a.x = must(p+"x", gpu.CatActivations, N*c.C)
			m.acts = append(m.acts, a)
			continue
		}
		if m.layout.Recompute {
			p = "act.shared."
		}
		a := layerBuffers{}
		for _, t := range []struct {
			dst  **gpu.Buffer
			name string
			n    int
		}{{&a.x, "x", N * c.C}, {&a.h1, "h1", N * c.C}, {&a.q, "q", N * c.C}, {&a.k, "k", N * c.C}, {&a.v, "v", N * c.C},
			{&a.att, "att", N * c.C}, {&a.x2, "x2", N * c.C}, {&a.h2, "h2", N * c.C}, {&a.rstd1, "rstd1", N}, {&a.rstd2, "rstd2", N},
			{&a.lse, "lse", c.B * c.NH * c.T}, {&a.g, "g", N * c.H}, {&a.u, "u", N * c.H}, {&a.s, "s", N * c.H}} {
			if t.name == "x" {
				*t.dst = must(fmt.Sprintf("act.%d.x", l), gpu.CatActivations, t.n)
				continue
			}
			*t.dst = must(p+t.name, gpu.CatActivations, t.n)
		}
		m.acts = append(m.acts, a)
		if m.layout.Recompute {
			shared = &a
		}
	}
	m.chunk = min(N, shaders.CrossEntropyRowsPerChunk(m.D, c.V))
	m.xf = must("act.xf", gpu.CatActivations, N*c.C)
	m.hf = must("act.hf", gpu.CatActivations, N*c.C)
	m.rstdf = must("act.rstdf", gpu.CatActivations, N)
	m.logits = must("act.logits", gpu.CatActivations, m.chunk*c.V)
	m.losses = must("act.losses", gpu.CatActivations, N)
	m.lossSum = must("loss", gpu.CatScratch, 4)
	m.lossAcc = must("loss_acc", gpu.CatScratch, 4)
	if m.chunk < N {
		m.hfChunk = must("scratch.hf_chunk", gpu.CatScratch, m.chunk*c.C)
		m.dChunk = must("scratch.dhf_chunk", gpu.CatScratch, m.chunk*c.C)
	}
	m.tokens = must("input.tokens", gpu.CatActivations, N)
	m.targets = must("input.targets", gpu.CatActivations, N)
	m.offsets = must("input.token_offsets", gpu.CatActivations, c.V+1)
	m.positions = must("input.token_positions", gpu.CatActivations, N)
	m.tmp = must("scratch.tmp", gpu.CatScratch, N*c.C)
	// Frozen layers: one frozen weight as float32 with its adapter merged
	// (W + s·B·A) for the fast matmul, and an adapter's scaled B.
	if n := m.frozenMergeLen(); n > 0 {
		m.wtmp = must("scratch.frozen_w", gpu.CatScratch, n)
	}
	if len(m.adapted) > 0 {
		m.loraSB = must("scratch.lora_sb", gpu.CatScratch, max(c.C, c.H)*m.layout.R)
	}
	if m.inference {
		return err
	}
	for _, t := range []struct {
		dst  **gpu.Buffer
		name string
	}{{&m.dx, "dx"}, {&m.dx2, "dx2"}, {&m.dh, "dh"}, {&m.dq, "dq"}, {&m.dk, "dk"}, {&m.dv, "dv"}, {&m.datt, "datt"}} {
		*t.dst = must("scratch."+t.name, gpu.CatScratch, N*c.C)
	}
	m.ds = must("scratch.ds", gpu.CatScratch, N*c.H)
	m.dg = must("scratch.dg", gpu.CatScratch, N*c.H)
	m.du = must("scratch.du", gpu.CatScratch, N*c.H)
	if len(m.adapted) > 0 { // an adapted map's weight gradient, and s·A
		m.gtmp = must("scratch.frozen_dw", gpu.CatScratch, m.adaptedLen())
		m.loraSA = must("scratch.lora_sa", gpu.CatScratch, max(c.C, c.H)*m.layout.R)
	}
	if len(m.frozen) > 0 {
		m.dgain = must("scratch.frozen_dgain", gpu.CatScratch, c.C)
	}
	first, total := shaders.GradNormPlan(sizes)
	m.normSlots = map[string]int{}
	for i, n := range names {
		m.normSlots[n] = first[i]
	}
	m.nPartials = total
	m.partials = must("optim.norm_partials", gpu.CatScratch, total)
	m.clip = must("optim.clip", gpu.CatScratch, 4)
	m.hyper = must("optim.hyper", gpu.CatScratch, 16)
	return err
}

// frozenMergeLen returns the elements of the largest frozen matrix that is
// widened from half precision or merged with an adapter before its
// products (0 when none is).
func (m *Model) frozenMergeLen() int {
	n := 0
	for _, s := range m.frozen {
		if len(s.Shape) == 2 && (m.wf[s.Name] == shaders.Half || m.adapted[s.Name]) {
			n = max(n, s.Numel())
		}
	}
	return n
}

// adaptedLen returns the elements of the largest adapted frozen matrix.
func (m *Model) adaptedLen() int {
	n := 0
	for _, s := range m.frozen {
		if m.adapted[s.Name] {
			n = max(n, s.Numel())
		}
	}
	return n
}

// Release frees every buffer of the model.
func (m *Model) Release() {
	for _, b := range m.all {
		b.Release()
	}
	m.all = nil
}

// Names returns the trained parameter names in spec order.
func (m *Model) Names() []string {
	out := make([]string, len(m.specs))
	for i, s := range m.specs {
		out[i] = s.Name
	}
	return out
}

// Specs returns the specs of the trained parameters (adapters included).
func (m *Model) Specs() []ParamSpec { return m.specs }

// FrozenSpecs returns the specs of the frozen blocks' tensors.
func (m *Model) FrozenSpecs() []ParamSpec { return m.frozen }

// Layout returns the model's layout (which blocks are frozen, the adapters).
func (m *Model) Layout() Layout { return m.layout }

// Format returns how a tensor is stored: a frozen weight matrix in the
// layout's format, everything else float32.
func (m *Model) Format(name string) shaders.WeightFormat {
	if f, ok := m.wf[name]; ok {
		return f
	}
	return shaders.F32
}

// Param returns a parameter's buffer, or nil.
func (m *Model) Param(name string) *gpu.Buffer { return m.params[name] }

// Grad returns a parameter's gradient buffer, or nil.
func (m *Model) Grad(name string) *gpu.Buffer { return m.grads[name] }

// spec finds a tensor's spec among the trained and the frozen ones.
func (m *Model) spec(name string) (ParamSpec, bool) {
	for _, set := range [][]ParamSpec{m.specs, m.frozen} {
		for _, s := range set {
			if s.Name == name {
				return s, true
			}
		}
	}
	return ParamSpec{}, false
}

// ReadParam downloads a parameter as float32 values; a frozen half
// weight is widened exactly.
func (m *Model) ReadParam(name string) ([]float32, error) {
	s, ok := m.spec(name)
	if !ok {
		return nil, fmt.Errorf("model has no tensor %s", name)
	}
	if m.Format(name) == shaders.Half {
		words, err := m.params[name].ReadU32(0, (s.Numel()+1)/2)
		if err != nil {
			return nil, err
		}
		return shaders.UnpackHalf(words, s.Numel()), nil
	}
	return m.params[name].ReadF32(0, s.Numel())
}

// ReadGrad downloads a gradient.
func (m *Model) ReadGrad(name string) ([]float32, error) { return m.readNamed(m.grads, name) }

func (m *Model) readNamed(set map[string]*gpu.Buffer, name string) ([]float32, error) {
	b, ok := set[name]
	if !ok {
		return nil, fmt.Errorf("model has no tensor %s", name)
	}
	return b.ReadF32(0, m.numel(name))
}

// WriteParam uploads a parameter, checking its length; a frozen half
// weight is rounded to half precision (shaders.PackHalf).
func (m *Model) WriteParam(name string, data []float32) error {
	s, ok := m.spec(name)
	if !ok {
		return fmt.Errorf("model has no parameter %s", name)
	}
	if len(data) != s.Numel() {
		return fmt.Errorf("parameter %s: %d values, want %d (shape %v)", name, len(data), s.Numel(), s.Shape)
	}
	if m.Format(name) == shaders.Half {
		return m.params[name].WriteU32(0, shaders.PackHalf(data))
	}
	return m.params[name].WriteF32(0, data)
}

// ReadState downloads an AdamW moment of a parameter: kind is "m" or "v".
func (m *Model) ReadState(kind, name string) ([]float32, error) {
	set, err := m.stateSet(kind)
	if err != nil {
		return nil, err
	}
	return m.readNamed(set, name)
}

// WriteState uploads an AdamW moment of a parameter: kind is "m" or "v".
func (m *Model) WriteState(kind, name string, data []float32) error {
	set, err := m.stateSet(kind)
	if err != nil {
		return err
	}
	b, ok := set[name]
	if !ok {
		return fmt.Errorf("model has no optimizer state %s.%s", kind, name)
	}
	if want := m.numel(name); len(data) != want {
		return fmt.Errorf("optimizer state %s.%s: %d values, want %d", kind, name, len(data), want)
	}
	return b.WriteF32(0, data)
}

func (m *Model) stateSet(kind string) (map[string]*gpu.Buffer, error) {
	switch kind {
	case "m":
		return m.m, nil
	case "v":
		return m.v, nil
	}
	return nil, fmt.Errorf("unknown optimizer state %q (want m or v)", kind)
}

func (m *Model) numel(name string) int {
	if s, ok := m.spec(name); ok {
		return s.Numel()
	}
	return -1
}
