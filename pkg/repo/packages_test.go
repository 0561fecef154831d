package repo

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePackagesFixtures(t *testing.T) {
	tests := []struct {
		file string
		want []Package
	}{{
		file: "simple.Packages",
		want: []Package{{
			Name:          "base-files",
			Version:       "12.4+deb12u5",
			Architecture:  "amd64",
			MultiArch:     "foreign",
			Essential:     true,
			Priority:      "required",
			Section:       "admin",
			Replaces:      "base, dpkg (<= 1.15.0), miscutils",
			Provides:      "base",
			PreDepends:    "awk",
			Breaks:        "debian-security-support (<< 2019.04.25), initscripts (<< 2.88dsf-13.3), sendfile (<< 2.1b.20080616-5.2~)",
			Filename:      "pool/main/b/base-files/base-files_12.4+deb12u5_amd64.deb",
			URL:           "http://repo.example/debian/pool/main/b/base-files/base-files_12.4+deb12u5_amd64.deb",
			SHA256:        "7bd2e5b8ffd2e08d9c0ab2ba9b63f1fa2d7b5c2a0cb7a9b9d0c0a9f5d0c5e1a2",
			Size:          70692,
			InstalledSize: 340,
			Origin:        3,
		}, {
			Name:          "bash",
			Version:       "5.2.15-2+b2",
			Architecture:  "amd64",
			MultiArch:     "foreign",
			Essential:     true,
			Priority:      "required",
			Section:       "shells",
			Depends:       "base-files (>= 2.1.12), debianutils (>= 5.6-0.1)",
			PreDepends:    "libc6 (>= 2.36), libtinfo6 (>= 6)",
			Conflicts:     "bash-completion (<< 20060301-0)",
			Replaces:      "bash-completion (<< 20060301-0), bash-doc (<= 2.05-1)",
			Recommends:    "bash-completion (>= 20060301-0)",
			Filename:      "pool/main/b/bash/bash_5.2.15-2+b2_amd64.deb",
			URL:           "http://repo.example/debian/pool/main/b/bash/bash_5.2.15-2+b2_amd64.deb",
			SHA256:        "0d23f3d2d27a36c9a1c4e5f5f0c4bfe5ec9ec4c3dd43f6a6f5b7d4a2e8f1c0b9",
			Size:          1490104,
			InstalledSize: 7160,
			Origin:        3,
		}, {
			Name:         "folded",
			Version:      "1.0",
			Architecture: "all",
			Depends:      "a, b (>= 1), c | d",
			Filename:     "pool/main/f/folded/folded_1.0_all.deb",
			URL:          "http://repo.example/debian/pool/main/f/folded/folded_1.0_all.deb",
			SHA256:       "00000000000000000000000000000000000000000000000000000000000000ff",
			Size:         10,
			Origin:       3,
		}},
	}, {
		file: "crlf.Packages",
		want: []Package{{
			Name: "crlf", Version: "2", Architecture: "arm64", Filename: "pool/c.deb",
			URL: "http://repo.example/debian/pool/c.deb", Origin: 3,
		}, {
			Name: "noeol", Version: "3", Architecture: "all", Filename: "pool/n.deb",
			URL: "http://repo.example/debian/pool/n.deb", Origin: 3,
		}},
	}}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("..", "..", "testdata", "repo", "packages", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// A trailing slash on the base URI must not double up.
			got, err := ParsePackages(f, "http://repo.example/debian/", 3)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParsePackages(%s) mismatch (-want +got):\n%s", tt.file, diff)
			}
		})
	}
}

func TestParsePackagesErrors(t *testing.T) {
	const ok = "Package: a\nVersion: 1\nArchitecture: all\nFilename: a.deb\n"
	tests := []struct {
		name, in string
		line     int
		msg      string
	}{
		{"no colon", ok + "\nPackage b\n", 6, `expected "Field: value"`},
		{"leading colon", ok + "\n: x\n", 6, `expected "Field: value"`},
		{"space in name", ok + "\nPackage b: x\n", 6, `invalid field name "Package b"`},
		{"continuation first", " x\nPackage: a\n", 1, "continuation line outside a field"},
		{"missing package", ok + "\nVersion: 1\nArchitecture: all\nFilename: b.deb\n", 6, "no Package field"},
		{"missing version", ok + "\n\nPackage: b\nArchitecture: all\nFilename: b.deb\n", 7, "no Version field"},
		{"missing filename", "Package: b\nVersion: 1\nArchitecture: all\n", 1, "no Filename field"},
		{"empty version", "Package: b\nVersion:\nArchitecture: all\nFilename: b\n", 1, "no Version field"},
		{"duplicate", "Package: b\nVersion: 1\nversion: 2\n", 3, "duplicate field Version"},
		{"bad size", ok + "Size: 12x\n", 1, `Size: not a decimal number: "12x"`},
		{"negative installed size", ok + "Installed-Size: -1\n", 1, "Installed-Size: not a decimal number"},
		{"bad essential", ok + "Essential: maybe\n", 1, `Essential: want yes or no, got "maybe"`},
		{"bad sha256", ok + "SHA256: abc\n", 1, "SHA256: not 64 hex digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePackages(strings.NewReader(tt.in), "http://x", 0)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *ParseError", err)
			}
			if pe.Line != tt.line || !strings.Contains(pe.Msg, tt.msg) {
				t.Errorf("err = %q, want line %d containing %q", err, tt.line, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), fmt.Sprintf("line %d: ", tt.line)) {
				t.Errorf("err = %q does not start with the line", err)
			}
		})
	}
}

func TestParsePackagesLongLine(t *testing.T) {
	// A Depends longer than the reader's buffer must survive intact.
	deps := strings.Repeat("libfoo (>= 1), ", 200000) + "libbar"
	in := "Package: big\nVersion: 1\nArchitecture: all\nDepends: " + deps + "\nFilename: b.deb\n\nPackage: next\nVersion: 1\nArchitecture: all\nFilename: n.deb\n"
	got, err := ParsePackages(strings.NewReader(in), "http://x", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Depends != deps || got[1].Name != "next" {
		t.Fatalf("got %d packages, first Depends len %d (want %d)", len(got), len(got[0].Depends), len(deps))
	}
}

func TestParsePackagesEmpty(t *testing.T) {
	got, err := ParsePackages(strings.NewReader("\n\n  \n"), "http://x", 0)
	if err != nil || len(got) != 0 {
		t.Fatalf("got %v, %v; want no packages, no error", got, err)
	}
}

// benchPackages returns the index the benchmark parses: the file named by
// $REPO_BENCH_PACKAGES (an uncompressed Packages file, e.g. bookworm main
// amd64) when set, else a generated index of the same shape and size.
func benchPackages(b *testing.B) []byte {
	if p := os.Getenv("REPO_BENCH_PACKAGES"); p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		return data
	}
	return generatePackages(63440)
}

// generatePackages writes n stanzas shaped like bookworm's: the same fields,
// a multi-line Description and Tag, ~790 bytes each.
func generatePackages(n int) []byte {
	var buf bytes.Buffer
	for i := range n {
		fmt.Fprintf(&buf, "Package: pkg%d\nVersion: 1.%d-1\nInstalled-Size: %d\n", i, i, i*7)
		buf.WriteString("Maintainer: Some Team <team@lists.example.org>\nArchitecture: amd64\nMulti-Arch: same\n")
		fmt.Fprintf(&buf, "Depends: libc6 (>= 2.34), libpkg%d (= 1.%d-1), libgcc-s1 (>= 3.4), libstdc++6 (>= 12), zlib1g (>= 1:1.2.0)\n", i+1, i)
		buf.WriteString("Description: a generated package for the benchmark\n")
		buf.WriteString(" This long description spans lines, as real ones do, so the parser\n skips continuation lines of fields it does not keep.\n .\n Another paragraph.\n")
		buf.WriteString("Homepage: https://example.org/\nDescription-md5: d943033bedada21853d2ae54a2578a7b\n")
		buf.WriteString("Tag: game::strategy, interface::graphical, interface::x11, role::program,\n uitoolkit::sdl, use::gameplaying\n")
		fmt.Fprintf(&buf, "Section: libs\nPriority: optional\nFilename: pool/main/p/pkg%d/pkg%d_1.%d-1_amd64.deb\nSize: %d\n", i, i, i, i*13)
		buf.WriteString("MD5sum: 4d471183a39a3a11d00cd35bf9f6803d\nSHA256: 3a2118df47bf3f04285649f0455c2fc6fe2dc7f0b237073038aa00af41f0d5f2\n\n")
	}
	return buf.Bytes()
}

func BenchmarkParsePackages(b *testing.B) {
	data := benchPackages(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var n int
	for b.Loop() {
		pkgs, err := ParsePackages(bytes.NewReader(data), "http://repo.example/debian", 0)
		if err != nil {
			b.Fatal(err)
		}
		n = len(pkgs)
	}
	b.ReportMetric(float64(n), "packages")
}
