package gpu

import (
	"fmt"
	"strings"
	"sync"
)

// Category says what a GPU allocation is for. The ledger keeps current and
// high-water bytes per category, which is how step-gpu measures memory:
// WebGPU itself has no query for used memory.
type Category int

// The ledger categories, in the order reports print them.
const (
	CatParams Category = iota
	CatGrads
	CatOptState
	CatActivations
	CatLoRA
	CatScratch
	// CatCache holds kernel-internal caches that exist, and are as large
	// as they are, because of the kernel path a device chose (matmul
	// packing textures, attention's input textures on CPU adapters, RMSNorm
	// partial sums, bind groups' uniform buffers): memory plans report them
	// apart.
	CatCache
	CatStaging
	numCategories
)

var categoryNames = [numCategories]string{"params", "grads", "optstate", "activations", "lora", "scratch", "cache", "staging"}

// String returns the category's short name as used in logs and JSON.
func (c Category) String() string {
	if c < 0 || c >= numCategories {
		return fmt.Sprintf("category(%d)", int(c))
	}
	return categoryNames[c]
}

// Categories lists every ledger category in report order.
func Categories() []Category {
	out := make([]Category, numCategories)
	for i := range out {
		out[i] = Category(i)
	}
	return out
}

// Ledger counts the bytes allocated on the device, by category. Current is
// what is live now; Peak is the high-water mark since creation or the last
// ResetPeak. The total's peak is tracked on its own, because the peaks of the
// categories need not coincide in time.
type Ledger struct {
	mu        sync.Mutex
	cur, peak [numCategories]uint64
	total     uint64
	totalPeak uint64
}

// Snapshot is a copy of the ledger at one moment.
type Snapshot struct {
	Current   map[string]uint64 `json:"current"`
	Peak      map[string]uint64 `json:"peak"`
	Total     uint64            `json:"total"`
	TotalPeak uint64            `json:"total_peak"`
}

func (l *Ledger) add(c Category, n uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cur[c] += n
	l.total += n
	if l.cur[c] > l.peak[c] {
		l.peak[c] = l.cur[c]
	}
	if l.total > l.totalPeak {
		l.totalPeak = l.total
	}
}

func (l *Ledger) sub(c Category, n uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n > l.cur[c] {
		panic(fmt.Sprintf("gpu: ledger underflow in %s: freeing %d of %d bytes", c, n, l.cur[c]))
	}
	l.cur[c] -= n
	l.total -= n
}

// Current returns the live bytes of one category.
func (l *Ledger) Current(c Category) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur[c]
}

// Peak returns the high-water bytes of one category.
func (l *Ledger) Peak(c Category) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peak[c]
}

// Total returns the live bytes of all categories together.
func (l *Ledger) Total() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// TotalPeak returns the high-water mark of the total.
func (l *Ledger) TotalPeak() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.totalPeak
}

// ResetPeak sets every high-water mark to the current value, so that the
// next phase (a training stage, say) is measured on its own.
func (l *Ledger) ResetPeak() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.peak = l.cur
	l.totalPeak = l.total
}

// Snapshot returns a copy of the ledger keyed by category name.
func (l *Ledger) Snapshot() Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Snapshot{Current: map[string]uint64{}, Peak: map[string]uint64{}, Total: l.total, TotalPeak: l.totalPeak}
	for c := Category(0); c < numCategories; c++ {
		s.Current[c.String()] = l.cur[c]
		s.Peak[c.String()] = l.peak[c]
	}
	return s
}

// String formats the ledger as one line of current/peak MiB per category.
func (l *Ledger) String() string {
	s := l.Snapshot()
	var b strings.Builder
	for _, c := range Categories() {
		fmt.Fprintf(&b, "%s %.1f/%.1f MiB, ", c, MiB(s.Current[c.String()]), MiB(s.Peak[c.String()]))
	}
	fmt.Fprintf(&b, "total %.1f/%.1f MiB", MiB(s.Total), MiB(s.TotalPeak))
	return b.String()
}

// MiB converts bytes to mebibytes for printing.
func MiB(n uint64) float64 { return float64(n) / (1 << 20) }
