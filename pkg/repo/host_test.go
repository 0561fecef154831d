package repo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVerifyHostInRelease checks the InRelease files apt keeps on this host
// against the Debian keyrings, one key file at a time: each release is
// signed by several keys, and any one of them must be enough.
func TestVerifyHostInRelease(t *testing.T) {
	files, _ := filepath.Glob("/var/lib/apt/lists/*_dists_bookworm*_InRelease")
	if len(files) == 0 {
		t.Skip("no bookworm InRelease in /var/lib/apt/lists")
	}
	keyrings := []string{
		"/usr/share/keyrings/debian-archive-keyring.gpg",
		"/usr/share/keyrings/debian-archive-bookworm-automatic.gpg",
		"/usr/share/keyrings/debian-archive-bookworm-security-automatic.gpg",
		"/usr/share/keyrings/debian-archive-bookworm-stable.gpg",
		"/usr/share/keyrings/debian-archive-trixie-automatic.gpg",
		"/usr/share/keyrings/debian-archive-trixie-security-automatic.gpg",
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		verified := 0
		for _, kr := range keyrings {
			el, err := readKeyring(kr)
			if err != nil {
				t.Skipf("keyring: %v", err)
			}
			text, _, err := verifyInRelease(f, data, el, fileTime(t, f))
			if err != nil {
				t.Logf("%s with %s: %v", filepath.Base(f), filepath.Base(kr), err)
				continue
			}
			if _, _, _, err := parseRelease(f, text, Source{Suite: suiteOf(f)}, fileTime(t, f)); err != nil {
				t.Errorf("%s: %v", f, err)
			}
			verified++
		}
		// The full keyring plus at least one per-release key file.
		if verified < 2 {
			t.Errorf("%s verified with %d keyrings, want at least 2", filepath.Base(f), verified)
		}
	}
}

// fileTime is when apt fetched the file: a time at which it was valid.
func fileTime(t *testing.T, f string) time.Time {
	st, err := os.Stat(f)
	if err != nil {
		t.Fatal(err)
	}
	return st.ModTime()
}

// suiteOf reads the suite from apt's list file name
// (host_path_dists_<suite>_InRelease).
func suiteOf(f string) string {
	b := strings.TrimSuffix(filepath.Base(f), "_InRelease")
	return b[strings.LastIndex(b, "_")+1:]
}
