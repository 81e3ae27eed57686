package repro

import (
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/step-gpu/step-gpu/gpu"
)

// The plot files Write puts in the output folder.
const (
	LossPlot   = "loss.png"
	MemoryPlot = "memory.png"
)

// PlotLoss draws the validation loss against trained tokens, one line per
// method, with a triangle where a STEP run grew.
func (rs *Results) PlotLoss(path string) error {
	p := plot.New()
	p.Title.Text = "Validation loss against tokens"
	p.X.Label.Text = "tokens"
	p.Y.Label.Text = "validation loss"
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	var marks plotter.XYs
	for i, r := range rs.Methods {
		if len(r.Curve) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(r.Curve))
		for j, pt := range r.Curve {
			xys[j] = plotter.XY{X: float64(pt.Tokens), Y: pt.ValLoss}
		}
		// Points as well as lines, so that a curve of one evaluation shows.
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return fmt.Errorf("plot %s: %w", path, err)
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.5)
		line.Dashes = plotutil.Dashes(i / len(plotutil.DefaultColors))
		points.Color = line.Color
		points.Shape = draw.CircleGlyph{}
		points.Radius = vg.Points(1.5)
		p.Add(line, points)
		p.Legend.Add(r.Label, line)
		for _, g := range r.Growth {
			if y, ok := valAt(r.Curve, g); ok {
				marks = append(marks, plotter.XY{X: float64(g), Y: y})
			}
		}
	}
	if len(marks) > 0 {
		s, err := plotter.NewScatter(marks)
		if err != nil {
			return fmt.Errorf("plot %s: %w", path, err)
		}
		s.Shape = draw.TriangleGlyph{}
		s.Radius = vg.Points(4)
		s.Color = color.Black
		p.Add(s)
		p.Legend.Add("growth", s)
	}
	if err := p.Save(8*vg.Inch, 5*vg.Inch, path); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}

// valAt returns the validation loss evaluated at a token count (runs
// evaluate at the end of every stage, so a growth has one).
func valAt(curve []Point, tokens int64) (float64, bool) {
	for _, pt := range curve {
		if pt.Tokens == tokens {
			return pt.ValLoss, true
		}
	}
	return 0, false
}

// memorySeries are the bars of the memory plot, per stage.
var memorySeries = []struct {
	name string
	get  func(r Result, stage int) float64
}{
	{"measured model buffers", func(r Result, i int) float64 { return gpu.MiB(r.Memory[i].Model) }},
	{"planned model buffers", func(r Result, i int) float64 { return gpu.MiB(r.Memory[i].Plan) }},
	{"measured model states", func(r Result, i int) float64 { return gpu.MiB(States(r.Memory[i])) }},
	{"paper formula", func(r Result, i int) float64 { return float64(r.Memory[i].Paper) / (1 << 20) }},
}

// PlotMemory draws each stage's memory of each method as grouped bars:
// the ledger's model buffers, the plan's, the ledger's model states and the
// paper's formula, in MiB.
func (rs *Results) PlotMemory(path string) error {
	type group struct {
		r     Result
		stage int
	}
	var groups []group
	var names []string
	for _, r := range rs.Methods {
		for i := range r.Memory {
			groups = append(groups, group{r, i})
			name := r.Label
			if len(r.Memory) > 1 {
				name = fmt.Sprintf("%s stage %d", r.Label, r.Memory[i].Stage)
			}
			names = append(names, name)
		}
	}
	p := plot.New()
	p.Title.Text = "Memory per stage (MiB)"
	p.Y.Label.Text = "MiB"
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	// Bars fill about 70% of each group's share of the figure's width;
	// the y range leaves room above the bars for the legend.
	n := len(memorySeries)
	width := max(8*vg.Inch, vg.Length(len(groups))*vg.Points(float64(n)*9+14))
	w := 0.7 * (width - vg.Inch) / vg.Length(max(1, len(groups))*n)
	top := 0.0
	for k, s := range memorySeries {
		vals := make(plotter.Values, len(groups))
		for j, g := range groups {
			vals[j] = s.get(g.r, g.stage)
			top = max(top, vals[j])
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return fmt.Errorf("plot %s: %w", path, err)
		}
		bars.Color = plotutil.Color(k)
		bars.LineStyle.Width = 0
		bars.Offset = w * vg.Length(float64(k)-float64(n-1)/2)
		p.Add(bars)
		p.Legend.Add(s.name, bars)
	}
	p.Y.Min, p.Y.Max = 0, 1.3*max(top, 1e-3)
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = math.Pi / 4
	p.X.Tick.Label.XAlign = text.XRight
	p.X.Tick.Label.YAlign = text.YCenter
	if err := p.Save(width, 6*vg.Inch, path); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}
