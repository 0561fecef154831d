package provenance

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/testutil"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

var actions = map[string]string{
	"GITHUB_ACTIONS":      "true",
	"GITHUB_SERVER_URL":   "https://github.com",
	"GITHUB_REPOSITORY":   "octo/images",
	"GITHUB_SHA":          "0123456789abcdef0123456789abcdef01234567",
	"GITHUB_WORKFLOW_REF": "octo/images/.github/workflows/build.yml@refs/heads/main",
	"GITHUB_RUN_ID":       "42",
	"GITHUB_RUN_ATTEMPT":  "2",
}

func TestGolden(t *testing.T) {
	lf, err := manifest.Load(filepath.Join("..", "..", "testdata", "lock", "blueprint.lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := lf.Entry("x86_64", "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"local", map[string]string{}},
		{"github", actions},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(lf, e, WithGetenv(env(tc.env)), WithLockfile("images/blueprint.lock.json", strings.Repeat("ef", 32)))
			if err != nil {
				t.Fatal(err)
			}
			p.RunDetails.Builder.Version = map[string]string{"ibuild": "test"}
			got, err := p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("..", "..", "testdata", "publish", "provenance-"+tc.name+".json")
			want := testutil.Golden(t, golden, got)

			// in-toto's type reads the golden file back and validates it.
			back, err := Parse(want)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(back.Provenance, p.Provenance) {
				t.Error("the golden file reads back differently")
			}
			// Encoding is stable: the same document, the same bytes.
			again, _ := back.Marshal()
			if string(again) != string(want) {
				t.Error("encoding the read-back provenance gave other bytes")
			}
		})
	}
}

func TestFields(t *testing.T) {
	lf, err := manifest.Load(filepath.Join("..", "..", "testdata", "lock", "blueprint.lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	e, _ := lf.Entry("x86_64", "qcow2")
	p, err := New(lf, e, WithGetenv(env(actions)), WithLockfile("images/blueprint.lock.json", strings.Repeat("ef", 32)))
	if err != nil {
		t.Fatal(err)
	}
	// Checked as a consumer reads it: encoded, then parsed by in-toto's type.
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if p, err = Parse(b); err != nil {
		t.Fatal(err)
	}
	bd := p.BuildDefinition
	if bd.BuildType != BuildType || !strings.HasPrefix(bd.BuildType, "https://") {
		t.Errorf("buildType %q", bd.BuildType)
	}
	ext, in, err := p.Parameters()
	if err != nil {
		t.Fatal(err)
	}
	if got := ext.Blueprint; got.Path != "images/blueprint.toml" || got.Digest["sha256"] != lf.Blueprint.SHA256 {
		t.Errorf("blueprint %+v", got)
	}
	if got := ext.Entry; got.Arch != "x86_64" || got.Type != "qcow2" {
		t.Errorf("entry %+v", got)
	}
	if in.SourceDateEpoch != lf.SourceDateEpoch {
		t.Errorf("sourceDateEpoch %d, want %d", in.SourceDateEpoch, lf.SourceDateEpoch)
	}
	digests := map[string]string{}
	for _, d := range bd.ResolvedDependencies {
		for _, v := range d.Digest {
			digests[d.Name] = v
		}
	}
	if digests["lockfile"] != strings.Repeat("ef", 32) || digests["blueprint"] != lf.Blueprint.SHA256 ||
		digests["repository bookworm"] != lf.Repositories[0].InReleaseSHA256 || digests["source"] != actions["GITHUB_SHA"] {
		t.Errorf("resolved dependencies %v", digests)
	}
	if p.RunDetails.Builder.Id != "https://github.com/octo/images/.github/workflows/build.yml@refs/heads/main" {
		t.Errorf("builder id %s", p.RunDetails.Builder.Id)
	}
	if p.RunDetails.Metadata.InvocationId != "https://github.com/octo/images/actions/runs/42/attempts/2" {
		t.Errorf("invocation id %s", p.RunDetails.Metadata.InvocationId)
	}
	// Outside Actions: "ibuild VERSION" as a URI, no invocation, no source.
	p, _ = New(lf, e, WithGetenv(env(nil)))
	if ext, _, _ := p.Parameters(); !strings.HasPrefix(p.RunDetails.Builder.Id, BuilderURI+"@") || p.RunDetails.Metadata != nil || ext.Source != nil {
		t.Errorf("local run: %+v", p.RunDetails)
	}
	// A revision that is no commit id (a tag) is named in the source's
	// URI, not given as a gitCommit digest in-toto would refuse.
	p, err = New(lf, e, WithGetenv(env(nil)), WithSource("https://example.invalid/images", "v1.2"))
	if err != nil {
		t.Fatal(err)
	}
	if d := p.BuildDefinition.ResolvedDependencies[0]; d.Name != "source" || d.Uri != "git+https://example.invalid/images@v1.2" || len(d.Digest) != 0 {
		t.Errorf("source of a tag: %v", d)
	}
	// GITHUB_ACTIONS unset: the other variables are not trusted to name a builder.
	half := map[string]string{}
	for k, v := range actions {
		half[k] = v
	}
	delete(half, "GITHUB_ACTIONS")
	if id := BuilderID(env(half)); !strings.HasPrefix(id, BuilderURI) {
		t.Errorf("builder id without GITHUB_ACTIONS: %s", id)
	}
}

func TestErrors(t *testing.T) {
	lf, _ := manifest.Load(filepath.Join("..", "..", "testdata", "lock", "blueprint.lock.json"))
	e, _ := lf.Entry("x86_64", "qcow2")
	for _, tc := range []struct {
		opt  Option
		want string
	}{
		{WithLockfile("x.json", "nothex"), `provenance of x86_64/qcow2: lockfile digest "nothex" is not a sha256 hex digest`},
		{WithBuilderID("ibuild"), `builder id "ibuild" is not a URI`},
		// What in-toto's validation refuses is refused before signing.
		{WithLockfile("x.json", strings.Repeat("ab", 31)+"zz"), `is not a sha256 hex digest`},
	} {
		if _, err := New(lf, e, tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}
