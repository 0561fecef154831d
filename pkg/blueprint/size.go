package blueprint

import (
	"fmt"
	"math/big"
	"regexp"
	"strings"
)

var sizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$`)

var sizeUnits = map[string]uint64{
	"":    1,
	"kB":  1000,
	"KiB": 1 << 10,
	"MB":  1000 * 1000,
	"MiB": 1 << 20,
	"GB":  1000 * 1000 * 1000,
	"GiB": 1 << 30,
	"TB":  1000 * 1000 * 1000 * 1000,
	"TiB": 1 << 40,
}

// ParseSize converts a data size as composer writes it to bytes: a plain
// integer ("1048576") or a number with one of the units kB, KiB, MB, MiB,
// GB, GiB, TB, TiB ("20 GiB", "1.5 GiB", "512MiB"). Fractions round to
// the nearest byte and are not allowed without a unit.
func ParseSize(s string) (uint64, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("invalid size %q: want a number of bytes or a number with a unit such as \"20 GiB\"", s)
	}
	mult, ok := sizeUnits[m[2]]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (want kB, KiB, MB, MiB, GB, GiB, TB or TiB)", s, m[2])
	}
	if m[2] == "" && strings.Contains(m[1], ".") {
		return 0, fmt.Errorf("invalid size %q: a number of bytes must be an integer", s)
	}
	r, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	r.Mul(r, new(big.Rat).SetUint64(mult))
	// Round half up: floor(r + 1/2).
	r.Add(r, big.NewRat(1, 2))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !n.IsUint64() {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return n.Uint64(), nil
}
