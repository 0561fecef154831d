// Package shacrypt computes SHA-512 crypt(3) hashes ("$6$salt$…", Ulrich
// Drepper's "Unix crypt using SHA-256 and SHA-512" with the default 5000
// rounds), which every libxcrypt and shadow verifies.
//
// It is written here because lock must hash a blueprint's plaintext
// password the way composer does, deterministically and in pure Go, and
// no well-kept Go module the proxy serves implements crypt(3); the
// algorithm is short and fixed by its specification's test vectors.
package shacrypt

import (
	"crypto/sha512"
	"errors"
	"strings"
)

const itoa64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// rounds is the specification's default; hashes then carry no rounds=.
const rounds = 5000

// SaltChars are the characters a salt may hold.
const SaltChars = itoa64

// SHA512 returns the "$6$salt$hash" crypt string of password. The salt is
// up to 16 characters of SaltChars (longer ones are cut, as crypt does).
func SHA512(password, salt string) (string, error) {
	if len(salt) > 16 {
		salt = salt[:16]
	}
	if salt == "" || strings.Trim(salt, itoa64) != "" {
		return "", errors.New("salt must be 1-16 characters of [./0-9A-Za-z]")
	}
	p, s := []byte(password), []byte(salt)

	b := sha512.New()
	b.Write(p)
	b.Write(s)
	b.Write(p)
	sumB := b.Sum(nil)

	a := sha512.New()
	a.Write(p)
	a.Write(s)
	n := len(p)
	for ; n > 64; n -= 64 {
		a.Write(sumB)
	}
	a.Write(sumB[:n])
	for n := len(p); n > 0; n >>= 1 {
		if n&1 != 0 {
			a.Write(sumB)
		} else {
			a.Write(p)
		}
	}
	sumA := a.Sum(nil)

	dp := sha512.New()
	for range p {
		dp.Write(p)
	}
	pseq := repeat(dp.Sum(nil), len(p))

	ds := sha512.New()
	for i := 0; i < 16+int(sumA[0]); i++ {
		ds.Write(s)
	}
	sseq := repeat(ds.Sum(nil), len(s))

	c := sumA
	for i := 0; i < rounds; i++ {
		h := sha512.New()
		if i&1 != 0 {
			h.Write(pseq)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(sseq)
		}
		if i%7 != 0 {
			h.Write(pseq)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(pseq)
		}
		c = h.Sum(nil)
	}

	var out strings.Builder
	out.WriteString("$6$" + salt + "$")
	enc := func(b2, b1, b0 byte, n int) {
		w := uint(b2)<<16 | uint(b1)<<8 | uint(b0)
		for ; n > 0; n-- {
			out.WriteByte(itoa64[w&0x3f])
			w >>= 6
		}
	}
	// The specification's byte permutation for SHA-512.
	for _, t := range order {
		enc(c[t[0]], c[t[1]], c[t[2]], 4)
	}
	enc(0, 0, c[63], 2)
	return out.String(), nil
}

var order = [21][3]int{
	{0, 21, 42}, {22, 43, 1}, {44, 2, 23}, {3, 24, 45}, {25, 46, 4},
	{47, 5, 26}, {6, 27, 48}, {28, 49, 7}, {50, 8, 29}, {9, 30, 51},
	{31, 52, 10}, {53, 11, 32}, {12, 33, 54}, {34, 55, 13}, {56, 14, 35},
	{15, 36, 57}, {37, 58, 16}, {59, 17, 38}, {18, 39, 60}, {40, 61, 19},
	{62, 20, 41},
}

// repeat returns n bytes of sum repeated.
func repeat(sum []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out)+len(sum) <= n {
		out = append(out, sum...)
	}
	return append(out, sum[:n-len(out)]...)
}
