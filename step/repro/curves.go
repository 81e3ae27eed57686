package repro

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/step-gpu/step-gpu/step"
)

// Point is one evaluation of a run: the validation loss after Tokens
// trained tokens (Step optimizer steps) in stage Stage.
type Point struct {
	Step    int     `json:"step"`
	Tokens  int64   `json:"tokens"`
	Stage   int     `json:"stage"`
	ValLoss float64 `json:"val_loss"`
}

// ReadCurve returns the validation points of a run's metrics.jsonl (the
// records that carry val_loss), in file order.
func ReadCurve(path string) ([]Point, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("curve: %w", err)
	}
	defer f.Close()
	var out []Point
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		var m step.Metric
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("curve: %s line %d: %w", path, line, err)
		}
		if m.ValLoss != nil {
			out = append(out, Point{Step: m.Step, Tokens: m.Tokens, Stage: m.Stage, ValLoss: *m.ValLoss})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("curve: %s: %w", path, err)
	}
	return out, nil
}
