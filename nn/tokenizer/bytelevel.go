package tokenizer

import (
	"fmt"
	"strings"
)

// byteRune is GPT-2's byte-to-unicode mapping, used by byte-level BPE files:
// the printable bytes '!'..'~', '¡'..'¬' and '®'..'ÿ' stand for themselves,
// and the other 68 bytes (controls, space, 0x7f..0xa0, 0xad) map in byte
// order to U+0100, U+0101, ... so every token is a printable string.
var byteRune, runeByte = func() ([256]rune, map[rune]byte) {
	var br [256]rune
	rb := make(map[rune]byte, 256)
	next := rune(256)
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff) {
			br[b] = rune(b)
		} else {
			br[b] = next
			next++
		}
		rb[br[b]] = byte(b)
	}
	return br, rb
}()

// byteLevel returns the byte-level string of a token's bytes.
func byteLevel(tok []byte) string {
	var s strings.Builder
	for _, b := range tok {
		s.WriteRune(byteRune[b])
	}
	return s.String()
}

// fromByteLevel inverts byteLevel.
func fromByteLevel(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		b, ok := runeByte[r]
		if !ok {
			return nil, fmt.Errorf("%q: rune %U is not in the byte-level alphabet", s, r)
		}
		out = append(out, b)
	}
	return out, nil
}
