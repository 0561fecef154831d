package sbom

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spdx/tools-golang/spdx"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/testutil"
)

func loadFixture(t *testing.T) *manifest.Lockfile {
	t.Helper()
	lf, err := manifest.Load(filepath.Join("..", "..", "testdata", "lock", "blueprint.lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	return lf
}

func TestGolden(t *testing.T) {
	lf := loadFixture(t)
	e, err := lf.Entry("x86_64", "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := New(lf, e, WithName("example"), WithTool("ibuild-test"),
		WithLockfileDigest(strings.Repeat("ab", 32)),
		WithImageFile("disk.qcow2", strings.Repeat("cd", 32)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("..", "..", "testdata", "publish", "sbom-x86_64-qcow2.spdx.json")
	want := testutil.Golden(t, golden, got)
	// The SPDX library reads the golden file back to the same document.
	back, err := Parse(want)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(doc, back, cmpopts.IgnoreUnexported(spdx.Package{})); d != "" {
		t.Errorf("the golden file reads back differently (-built +read):\n%s", d)
	}
}

// TestContent checks the document against the lockfile, independently of
// the golden file: every os package once, with its purl, checksum and URL.
func TestContent(t *testing.T) {
	lf := loadFixture(t)
	e, err := lf.Entry("x86_64", "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	built, err := New(lf, e)
	if err != nil {
		t.Fatal(err)
	}
	// Checked as a consumer sees it: written, then read and validated by
	// the SPDX library.
	a, err := Marshal(built)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := Parse(a)
	if err != nil {
		t.Fatal(err)
	}
	var osp *manifest.Pipeline
	for i := range e.Pipelines {
		if e.Pipelines[i].Name == "os" {
			osp = &e.Pipelines[i]
		}
	}
	index := lf.PackageIndex()
	want := map[string]*manifest.Package{}
	for _, ref := range osp.PackageRefs() {
		want[index[ref].Name+":"+index[ref].Arch] = index[ref]
	}
	if len(want) == 0 {
		t.Fatal("fixture has no os packages")
	}
	got := map[string]*spdx.Package{}
	ids := map[spdx.ElementID]bool{}
	for _, p := range doc.Packages[1:] {
		if ids[p.PackageSPDXIdentifier] {
			t.Errorf("duplicate SPDXID %s", p.PackageSPDXIdentifier)
		}
		ids[p.PackageSPDXIdentifier] = true
		if p.PackageSupplier == nil || p.PackageSupplier.Supplier != "Debian" || p.PackageSupplier.SupplierType != "Organization" {
			t.Errorf("package %s: supplier %+v", p.PackageName, p.PackageSupplier)
		}
		arch := strings.SplitN(strings.SplitN(p.PackageExternalReferences[0].Locator, "arch=", 2)[1], "&", 2)[0]
		got[p.PackageName+":"+arch] = p
	}
	if len(got) != len(want) {
		t.Errorf("%d packages, want %d", len(got), len(want))
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("package %s missing", k)
			continue
		}
		if g.PackageVersion != w.Version || g.PackageDownloadLocation != w.URL || g.PackageChecksums[0].Value != w.SHA256 || g.PackageChecksums[0].Algorithm != spdx.SHA256 {
			t.Errorf("package %s: %+v does not match the lockfile's %+v", k, g, w)
		}
		if g.FilesAnalyzed || !g.IsFilesAnalyzedTagPresent {
			t.Errorf("package %s: filesAnalyzed %v (tag present: %v), want false, written", k, g.FilesAnalyzed, g.IsFilesAnalyzedTagPresent)
		}
		if ref := g.PackageExternalReferences[0]; ref.Category != "PACKAGE-MANAGER" || ref.RefType != "purl" ||
			!strings.HasPrefix(ref.Locator, "pkg:deb/debian/"+w.Name+"@") || !strings.HasSuffix(ref.Locator, "&distro="+e.Distro) {
			t.Errorf("package %s: external reference %+v", k, ref)
		}
	}
	if want := time.Unix(lf.SourceDateEpoch, 0).UTC().Format(time.RFC3339); doc.CreationInfo.Created != want {
		t.Errorf("created %s, want the source date epoch", doc.CreationInfo.Created)
	}
	if len(doc.Relationships) != len(want)+1 {
		t.Errorf("%d relationships, want %d", len(doc.Relationships), len(want)+1)
	}
	if id := doc.Relationships[0]; id.RefA.ElementRefID != "DOCUMENT" || id.Relationship != "DESCRIBES" || id.RefB.ElementRefID != doc.Packages[0].PackageSPDXIdentifier {
		t.Errorf("first relationship %+v, want the document describing the image", id)
	}
	// Same input, same bytes; another lockfile digest, another namespace.
	doc2, _ := New(lf, e)
	b, _ := Marshal(doc2)
	if string(a) != string(b) {
		t.Error("two runs gave different SBOMs")
	}
	doc3, _ := New(lf, e, WithLockfileDigest(strings.Repeat("01", 32)))
	if doc3.DocumentNamespace == doc.DocumentNamespace {
		t.Error("namespace does not depend on the lockfile digest")
	}
}

func TestErrors(t *testing.T) {
	lf := loadFixture(t)
	e, _ := lf.Entry("x86_64", "qcow2")
	noOS := *e
	noOS.Pipelines = nil
	for _, p := range e.Pipelines {
		if p.Name != "os" {
			noOS.Pipelines = append(noOS.Pipelines, p)
		}
	}
	missing := *lf
	missing.Packages = missing.Packages[1:]
	for _, tc := range []struct {
		name string
		lf   *manifest.Lockfile
		e    *manifest.Entry
		opts []Option
		want string
	}{
		{"no os pipeline", lf, &noOS, nil, `sbom of x86_64/qcow2: the entry has no "os" pipeline`},
		{"unknown package", &missing, e, nil, "installs " + lf.Packages[0].Ref() + ", which the lockfile's packages do not list"},
		{"bad digest", lf, e, []Option{WithLockfileDigest("xyz")}, `lockfile digest "xyz" is not a sha256 hex digest`},
		{"bad file digest", lf, e, []Option{WithImageFile("disk.qcow2", "")}, `image file disk.qcow2: "" is not a sha256 hex digest`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.lf, tc.e, tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestPURL(t *testing.T) {
	for _, tc := range []struct {
		p      manifest.Package
		distro string
		want   string
	}{
		{manifest.Package{Name: "curl", Version: "7.88.1-10+deb12u14", Arch: "amd64"}, "debian-12", "pkg:deb/debian/curl@7.88.1-10+deb12u14?arch=amd64&distro=debian-12"},
		{manifest.Package{Name: "openssh-client", Version: "1:9.2p1-2+deb12u7", Arch: "arm64"}, "debian-12", "pkg:deb/debian/openssh-client@1:9.2p1-2+deb12u7?arch=arm64&distro=debian-12"},
		{manifest.Package{Name: "tzdata", Version: "2025b-0+deb12u2", Arch: "all"}, "", "pkg:deb/debian/tzdata@2025b-0+deb12u2?arch=all"},
		{manifest.Package{Name: "x", Version: "1 2/3", Arch: "amd64"}, "trixie", "pkg:deb/debian/x@1%202%2F3?arch=amd64&distro=trixie"},
	} {
		if got := PURL(&tc.p, tc.distro); got != tc.want {
			t.Errorf("PURL(%s) = %s, want %s", tc.p.Ref(), got, tc.want)
		}
	}
}
