package tokenizer

// Byte classes for pre-tokenization.
const (
	classSpace = iota // \t \n \v \f \r and ' '
	classWord         // ASCII letters, digits, '_' and bytes >= 0x80
	classPunct        // everything else
)

var byteClass = func() (c [256]uint8) {
	for i := range c {
		b := byte(i)
		switch {
		case b == ' ' || (b >= '\t' && b <= '\r'):
			c[i] = classSpace
		case b >= 0x80 || b == '_' || (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z'):
			c[i] = classWord
		default:
			c[i] = classPunct
		}
	}
	return c
}()

// SplitPattern is the chunk rule of this package as a regular expression
// (Oniguruma syntax, for the Hugging Face Split pre-tokenizer). It matches
// the chunks of Go's chunks function except for the MaxChunk cut.
const SplitPattern = ` ?[A-Za-z0-9_\x{80}-\x{10FFFF}]+` +
	`| ?[^\t\n\x{0B}\f\r A-Za-z0-9_\x{80}-\x{10FFFF}]+` +
	`|[\t\n\x{0B}\f\r ]*[\t\n\x{0B}\f\r](?![\t\n\x{0B}\f\r ])` +
	`|[\t\n\x{0B}\f\r ]+(?![^\t\n\x{0B}\f\r ])` +
	`|[\t\n\x{0B}\f\r ]+`

// chunks calls fn with the pre-tokenization chunks of text, in order; their
// concatenation is text (see the package comment for the rule).
func chunks(text []byte, fn func([]byte)) {
	emit := func(c []byte) {
		for len(c) > MaxChunk {
			fn(c[:MaxChunk])
			c = c[MaxChunk:]
		}
		fn(c)
	}
	n := len(text)
	for i := 0; i < n; {
		start := i
		cls := byteClass[text[i]]
		if cls == classSpace {
			j := i + 1
			for j < n && byteClass[text[j]] == classSpace {
				j++
			}
			if j == n {
				emit(text[i:j])
				return
			}
			if text[j-1] != ' ' {
				emit(text[i:j])
				i = j
				continue
			}
			// The run's last space goes with the next chunk.
			if j-i >= 2 {
				emit(text[i : j-1])
			}
			start, i = j-1, j
			cls = byteClass[text[i]]
		}
		for i < n && byteClass[text[i]] == cls {
			i++
		}
		emit(text[start:i])
	}
}
