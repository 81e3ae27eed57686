package hf

import (
	"fmt"
	"sort"
	"strings"
)

// LoRA adapter tensor suffixes: NAME.lora_a is A (R, in) and NAME.lora_b is
// B (out, R) for a base linear map NAME (out, in).
const (
	loraA = ".lora_a"
	loraB = ".lora_b"
)

// MergeAdapters folds every LoRA adapter pair in weights into its base
// weight, W += scale·B·A with scale = alpha/R, and removes the adapter
// tensors, so the map holds only plain parameters that a Hugging Face LLaMA
// (which has no adapters) can load. shapes gives the shape of every tensor
// in weights: the base NAME (out, in), NAME.lora_a (R, in) and NAME.lora_b
// (out, R). The sum is taken in float64 and rounded once to float32. It
// returns the merged base names, sorted; with no adapters it changes nothing.
func MergeAdapters(weights map[string][]float32, shapes map[string][]int, scale float64) ([]string, error) {
	var bases []string
	for name := range weights {
		switch {
		case strings.HasSuffix(name, loraA):
			bases = append(bases, strings.TrimSuffix(name, loraA))
		case strings.HasSuffix(name, loraB):
			if _, ok := weights[strings.TrimSuffix(name, loraB)+loraA]; !ok {
				return nil, fmt.Errorf("merge adapters: %s has no matching %s", name, loraA)
			}
		}
	}
	sort.Strings(bases)
	for _, base := range bases {
		if err := mergeOne(weights, shapes, base, scale); err != nil {
			return nil, fmt.Errorf("merge adapters: %w", err)
		}
	}
	for _, base := range bases {
		delete(weights, base+loraA)
		delete(weights, base+loraB)
	}
	return bases, nil
}

// mergeOne adds scale·B·A into the base weight.
func mergeOne(weights map[string][]float32, shapes map[string][]int, base string, scale float64) error {
	w, ok := weights[base]
	if !ok {
		return fmt.Errorf("adapter %s has no base weight %s", base+loraA, base)
	}
	a, b := weights[base+loraA], weights[base+loraB]
	if b == nil {
		return fmt.Errorf("adapter %s has no matching %s", base+loraA, base+loraB)
	}
	sw, sa, sb := shapes[base], shapes[base+loraA], shapes[base+loraB]
	if len(sw) != 2 || len(sa) != 2 || len(sb) != 2 {
		return fmt.Errorf("%s: base %v, A %v and B %v must all be matrices", base, sw, sa, sb)
	}
	out, in, R := sw[0], sw[1], sa[0]
	if sa[1] != in || sb[0] != out || sb[1] != R || R <= 0 {
		return fmt.Errorf("%s: base (%d, %d) needs A (R, %d) and B (%d, R), got A %v and B %v", base, out, in, in, out, sa, sb)
	}
	if len(w) != out*in || len(a) != R*in || len(b) != out*R {
		return fmt.Errorf("%s: tensor sizes %d, %d, %d disagree with shapes %v, %v, %v", base, len(w), len(a), len(b), sw, sa, sb)
	}
	row := make([]float64, in)
	for o := range out {
		for i := range row {
			row[i] = 0
		}
		for r := range R {
			bor := float64(b[o*R+r])
			ar := a[r*in : (r+1)*in]
			for i, x := range ar {
				row[i] += bor * float64(x)
			}
		}
		wr := w[o*in : (o+1)*in]
		for i := range wr {
			wr[i] = float32(float64(wr[i]) + scale*row[i])
		}
	}
	return nil
}
