package step

import (
	"encoding/json"
	"fmt"
	"os"
)

// Metric is one record of metrics.jsonl: one per logged step.
type Metric struct {
	Step            int                `json:"step"`
	Stage           int                `json:"stage"`
	Tokens          int64              `json:"tokens"`
	Loss            float64            `json:"loss"`
	Norm            float64            `json:"grad_norm"`
	LR              float64            `json:"lr"`
	MS              float64            `json:"ms"`
	TokPerS         float64            `json:"tok_per_s"`
	PeakShare       float64            `json:"peak_share,omitempty"`
	LedgerBytes     uint64             `json:"ledger_bytes"`
	LedgerPeakBytes uint64             `json:"ledger_peak_bytes"`
	Ledger          map[string]uint64  `json:"ledger_peak_by_category,omitempty"`
	ValLoss         *float64           `json:"val_loss,omitempty"`
	ValPPL          *float64           `json:"val_ppl,omitempty"`
	Extra           map[string]float64 `json:"extra,omitempty"`
}

// MetricsWriter appends records to a JSONL file, one line each, synced so
// a crash loses at most the line being written.
type MetricsWriter struct {
	f *os.File
}

// OpenMetrics opens (appending to) a metrics file.
func OpenMetrics(path string) (*MetricsWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &MetricsWriter{f: f}, nil
}

// Write appends one record.
func (w *MetricsWriter) Write(m Metric) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if _, err := w.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// Close closes the file.
func (w *MetricsWriter) Close() error { return w.f.Close() }
