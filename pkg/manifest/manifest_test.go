package manifest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/image-builder-action/image-builder-action/pkg/testutil"
)

func sample() *Lockfile {
	pkg := func(name, ver string) Package {
		return Package{Name: name, Version: ver, Arch: "amd64", URL: "http://archive.invalid/" + name + "_" + ver + ".deb",
			SHA256: strings.Repeat(string("0123456789abcdef"[len(name)%16]), 64), Size: int64(len(name) * 100)}
	}
	pkgs := []Package{pkg("dpkg", "1.21.22"), pkg("bash", "5.2.15-2+b7"), pkg("openssh-server", "1:9.2p1-2+deb12u6")}
	return &Lockfile{
		Version: FormatVersion, Tool: "ibuild test",
		Blueprint:       Input{Path: "bp.toml", SHA256: strings.Repeat("1", 64)},
		ImageDefs:       Input{SHA256: strings.Repeat("2", 64)},
		SourceDateEpoch: 1700000000,
		Repositories:    []Repository{{URI: "http://archive.invalid/debian", Suite: "bookworm", Components: []string{"main"}, Arches: []string{"amd64"}, InReleaseSHA256: strings.Repeat("3", 64), Date: "2026-11-20T08:00:00Z"}},
		Entries: []Entry{{Distro: "debian-12", Arch: "x86_64", Type: "qcow2", Filename: "disk.qcow2", Pipelines: []Pipeline{
			{Name: "build", Stages: []Stage{{Type: "debs", Options: json.RawMessage(`{"packages":["dpkg:amd64=1.21.22"]}`)}}},
			{Name: "os", Build: "build", Stages: []Stage{
				{Type: "debs", Options: json.RawMessage(`{"packages":["bash:amd64=5.2.15-2+b7","dpkg:amd64=1.21.22","openssh-server:amd64=1:9.2p1-2+deb12u6"]}`)},
				{Type: "hostname", Options: json.RawMessage(`{"hostname":"one"}`)},
			}},
		}}},
		Packages: pkgs,
	}
}

func TestMarshalCanonical(t *testing.T) {
	a := sample()
	// Option key order and package order must not matter.
	b := sample()
	b.Packages[0], b.Packages[2] = b.Packages[2], b.Packages[0]
	b.Entries[0].Pipelines[1].Stages[1].Options = json.RawMessage(`{ "hostname" : "one" }`)
	ab, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	bb, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ab, bb) {
		t.Errorf("equal content, different bytes:\n%s", cmp.Diff(string(ab), string(bb)))
	}
	if !bytes.HasSuffix(ab, []byte("}\n")) {
		t.Error("no trailing newline")
	}
	back, err := Parse("x", ab)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := back.Marshal()
	if !bytes.Equal(again, ab) {
		t.Error("does not round-trip")
	}
}

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.lock.json")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := sample()
	bad.Entries[0].Pipelines[0].Stages[0].Options = json.RawMessage(`{"broken":`)
	if err := bad.Write(p); err == nil {
		t.Fatal("writing invalid options: no error")
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("failed write changed the file: %q", b)
	}
	if err := sample().Write(p); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temp files left: %v", ents)
	}
}

func TestParseErrors(t *testing.T) {
	good, err := sample().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"unknown field", `"tool"`, `"tol"`, `line 3: json: unknown field "tol"`},
		{"format version", `"version": 1,`, `"version": 9,`, "format version 9"},
		{"wrong type", `"source_date_epoch": 1700000000`, `"source_date_epoch": "x"`, "line 12: field source_date_epoch"},
		{"bad digest", `"sha256": "4444`, `"sha256": "zzzz`, "is not a sha256 digest"},
		{"missing build pipeline", `"build": "build"`, `"build": "nope"`, `builds with "nope"`},
		{"syntax", `"entries": [`, `"entries": [,`, "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := strings.Replace(string(good), tc.from, tc.to, 1)
			if data == string(good) {
				t.Fatalf("%q not found in the sample", tc.from)
			}
			_, err := Parse("x.lock.json", []byte(data))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "x.lock.json") {
				t.Fatalf("got %v, want an error naming the file and containing %q", err, tc.want)
			}
		})
	}
}

func TestEntry(t *testing.T) {
	l := sample()
	l.Entries = append(l.Entries, Entry{Distro: "debian-12", Arch: "x86_64", Type: "raw"})
	if _, err := l.Entry("", ""); err == nil || !strings.Contains(err.Error(), "x86_64/qcow2, x86_64/raw") {
		t.Errorf("ambiguous: %v", err)
	}
	if e, err := l.Entry("", "raw"); err != nil || e.Type != "raw" {
		t.Errorf("by type: %v %v", e, err)
	}
	if _, err := l.Entry("aarch64", ""); err == nil {
		t.Error("missing arch: no error")
	}
}

func TestDiff(t *testing.T) {
	old := sample()
	nw := sample()
	// openssh-server updated, bash removed, curl added, the hostname changed.
	nw.Packages[2] = Package{Name: "openssh-server", Version: "1:9.2p1-2+deb12u7", Arch: "amd64", URL: "http://archive.invalid/o.deb", SHA256: strings.Repeat("e", 64), Size: 1}
	nw.Packages[1] = Package{Name: "curl", Version: "7.88.1-10+deb12u14", Arch: "amd64", URL: "http://archive.invalid/c.deb", SHA256: strings.Repeat("c", 64), Size: 1}
	nw.Entries[0].Pipelines[1].Stages[0].Options = json.RawMessage(`{"packages":["curl:amd64=7.88.1-10+deb12u14","dpkg:amd64=1.21.22","openssh-server:amd64=1:9.2p1-2+deb12u7"]}`)
	nw.Entries[0].Pipelines[1].Stages[1].Options = json.RawMessage(`{"hostname":"two"}`)
	nw.Repositories[0].InReleaseSHA256 = strings.Repeat("4", 64)
	nw.Repositories[0].Date = "2026-11-21T08:00:00Z"
	nw.Entries = append(nw.Entries, Entry{Distro: "debian-12", Arch: "x86_64", Type: "raw", Pipelines: []Pipeline{{Name: "build"}}})

	d := Compare(old, nw)
	for _, f := range []struct{ name, got string }{{"diff.txt", d.Text()}, {"diff.md", d.Markdown()}} {
		golden := filepath.Join("../../testdata/manifest", f.name)
		testutil.Golden(t, golden, []byte(f.got))

	}
	if !Compare(old, sample()).Empty() {
		t.Error("equal lockfiles: diff not empty")
	}
}

func TestMarkdownEscapes(t *testing.T) {
	old, nw := sample(), sample()
	// Package metadata is outside data: it must not break out of a cell.
	evil := "1.0|<script>`x`</script>\n## owned"
	nw.Packages[1].Version = evil
	nw.Entries[0].Pipelines[1].Stages[0].Options = json.RawMessage(`{"packages":["bash:amd64=` + strings.ReplaceAll(evil, "\n", `\n`) + `","dpkg:amd64=1.21.22","openssh-server:amd64=1:9.2p1-2+deb12u6"]}`)
	md := Compare(old, nw).Markdown()
	for _, bad := range []string{"<script>", "\n## owned", "`x`"} {
		if strings.Contains(md, bad) {
			t.Errorf("markdown contains %q:\n%s", bad, md)
		}
	}
}

func TestVerifyDigest(t *testing.T) {
	b, err := sample().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	l, err := Parse("x", b)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.VerifyDigest(); err != nil {
		t.Fatalf("fresh lockfile: %v", err)
	}
	for name, edit := range map[string][2]string{
		"stage option":   {`"hostname": "one"`, `"hostname": "two"`},
		"package digest": {`"sha256": "4444`, `"sha256": "5444`},
		"digest removed": {`"content_sha256": "`, `"content_sha256": "x`},
	} {
		t.Run(name, func(t *testing.T) {
			tampered := strings.Replace(string(b), edit[0], edit[1], 1)
			if tampered == string(b) {
				t.Fatalf("%q not in the sample", edit[0])
			}
			l, err := Parse("x", []byte(tampered))
			if err != nil {
				t.Fatal(err)
			}
			if err := l.VerifyDigest(); err == nil || !strings.Contains(err.Error(), "changed by hand") {
				t.Errorf("got %v", err)
			}
		})
	}
}

// TestReadFileRefusesHugeLockfile: a lockfile above MaxSize (from a pull
// request, say) is refused before it is read; one at MaxSize is read.
func TestReadFileRefusesHugeLockfile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.lock.json")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: no disk used.
	if err := f.Truncate(MaxSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = ReadFile(p)
	if err == nil || !strings.Contains(err.Error(), "larger than the 64 MiB a lockfile may be") || !strings.Contains(err.Error(), p) {
		t.Fatalf("err = %v", err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Load: err = %v", err)
	}
	if err := os.Truncate(p, MaxSize); err != nil {
		t.Fatal(err)
	}
	if data, err := ReadFile(p); err != nil || len(data) != MaxSize {
		t.Fatalf("%d bytes, %v", len(data), err)
	}
}
