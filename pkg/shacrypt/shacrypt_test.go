package shacrypt

import (
	"os/exec"
	"strings"
	"testing"
)

func TestSHA512(t *testing.T) {
	// The specification's test vector for the default rounds.
	for _, tc := range []struct{ pw, salt, want string }{
		{"Hello world!", "saltstring", "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
		{"", "x", ""},
	} {
		got, err := SHA512(tc.pw, tc.salt)
		if err != nil {
			t.Fatal(err)
		}
		if tc.want != "" && got != tc.want {
			t.Errorf("SHA512(%q, %q) = %s, want %s", tc.pw, tc.salt, got, tc.want)
		}
	}
	if _, err := SHA512("a", "bad salt"); err == nil {
		t.Error("bad salt accepted")
	}
	// Against openssl, for lengths around the 64-byte block.
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl")
	}
	for _, pw := range []string{"a", "hunter2", strings.Repeat("x", 64), strings.Repeat("y", 65), strings.Repeat("pässwörd", 20)} {
		for _, salt := range []string{"s", "saltsalt", "0123456789abcdef"} {
			out, err := exec.Command("openssl", "passwd", "-6", "-salt", salt, pw).Output()
			if err != nil {
				t.Fatal(err)
			}
			got, _ := SHA512(pw, salt)
			if want := strings.TrimSpace(string(out)); got != want {
				t.Errorf("SHA512(%q, %q) = %s, openssl says %s", pw, salt, got, want)
			}
		}
	}
}
