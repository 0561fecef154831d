package lock

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
)

var update = flag.Bool("update", false, "rewrite golden files")

// fixtureFetcher serves testdata/lock/Packages as one verified release.
type fixtureFetcher struct {
	packages string
	calls    int
}

func (f *fixtureFetcher) Fetch(ctx context.Context, srcs []repo.Source, arch string) (*repo.Index, error) {
	f.calls++
	fh, err := os.Open(f.packages)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	pkgs, err := repo.ParsePackages(fh, srcs[0].URI, 0)
	if err != nil {
		return nil, err
	}
	idx := &repo.Index{Packages: pkgs}
	for i, s := range srcs {
		idx.Releases = append(idx.Releases, repo.Release{Source: s, SHA256: strings.Repeat("ab", 32),
			Date: time.Date(2026, 11, 20+i, 8, 0, 0, 0, time.UTC)})
	}
	return idx, nil
}

func fixtureDefs(t *testing.T) *distro.Defs {
	t.Helper()
	d, err := distro.LoadFS(os.DirFS("../../testdata/lock/defs"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var fixtureSources = []repo.Source{
	{URI: "http://archive.invalid/debian", Suite: "bookworm", Components: []string{"main"}},
	{URI: "http://security.invalid/debian-security", Suite: "bookworm-security", Components: []string{"main"}},
}

func lockFixture(t *testing.T, bpPath string, opts ...Option) (*manifest.Lockfile, error) {
	t.Helper()
	bp, err := blueprint.Load(bpPath)
	if err != nil {
		t.Fatal(err)
	}
	base := []Option{
		WithDefs(fixtureDefs(t)),
		WithFetcher(&fixtureFetcher{packages: "../../testdata/lock/Packages"}),
		WithSources(fixtureSources[0]),
		WithArches("x86_64"),
		WithTypes("qcow2", "container"),
		WithLockDir(filepath.Dir(bpPath)),
		WithToolVersion("ibuild test"),
	}
	return Lock(context.Background(), bp, bpPath, append(base, opts...)...)
}

func TestLockGolden(t *testing.T) {
	lf, err := lockFixture(t, "../../testdata/lock/blueprint.toml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := lf.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	golden := "../../testdata/lock/blueprint.lock.json"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("lockfile differs from %s (-want +got; run with -update to accept):\n%s", golden, d)
	}
	// The golden file must read back as it is written.
	back, err := manifest.Parse(golden, want)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := back.Marshal()
	if !bytes.Equal(again, want) {
		t.Error("parse and marshal does not round-trip")
	}

	// What the pipelines must hold, whatever the golden file says.
	e, err := lf.Entry("x86_64", "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range e.Pipelines {
		names = append(names, p.Name)
	}
	if d := cmp.Diff([]string{"build", "os", "image", "qcow2"}, names); d != "" {
		t.Errorf("pipelines (-want +got):\n%s", d)
	}
	refs := strings.Join(e.Pipelines[1].PackageRefs(), " ")
	for _, want := range []string{"openssh-server:amd64=", "openssh-client:amd64=", "curl:amd64=", "linux-image-test:amd64=", "initramfs-tools:all=", "tzdata:all=", "base-files:amd64=", "libc6:amd64=2.36-9+deb12u13"} {
		if !strings.Contains(refs, want) {
			t.Errorf("os pipeline lacks %s: %s", want, refs)
		}
	}
	if lf.SourceDateEpoch != time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC).Unix() {
		t.Errorf("source_date_epoch %d: want the newest release date", lf.SourceDateEpoch)
	}
}

func TestLockDeterministic(t *testing.T) {
	var outs [][]byte
	for i := 0; i < 2; i++ {
		lf, err := lockFixture(t, "../../testdata/lock/blueprint.toml")
		if err != nil {
			t.Fatal(err)
		}
		b, err := lf.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, b)
	}
	if !bytes.Equal(outs[0], outs[1]) {
		t.Error("two locks of the same inputs differ")
	}
}

func writeBlueprint(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bp.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLockErrors(t *testing.T) {
	const head = "name = \"x\"\ndistro = \"testdist\"\n"
	for _, tc := range []struct {
		name string
		bp   string
		opts []Option
		want string
	}{
		{"unknown package", head + "[[packages]]\nname = \"nope\"\n", nil, `bp.toml:4:1: packages[0].name: package "nope" is not in the repositories`},
		{"unsatisfiable version", head + "[[packages]]\nname = \"curl\"\nversion = \"8.*\"\n", nil, "curl"},
		{"unknown distro", "name = \"x\"\ndistro = \"plan9\"\n", nil, `unknown distro "plan9"`},
		{"no distro", "name = \"x\"\n", nil, "no distro"},
		{"unknown arch", head, []Option{WithArches("riscv64")}, `unknown architecture "riscv64"`},
		{"unknown type", head, []Option{WithTypes("iso")}, `unknown image type "iso"`},
		{"groups refused", head + "[[groups]]\nname = \"rpm-development-tools\"\n", nil, `bp.toml:4:1: groups[0].name: testdist cannot honour this: Debian repositories have no package group "rpm-development-tools"`},
		{"openscap refused", head + "[customizations.openscap]\nprofile_id = \"x\"\ndatastream = \"/x\"\n", nil, "customizations.openscap"},
		// Starts like a hash, is not one: refused here, not at build.
		{"dollar password", head + "[[customizations.user]]\nname = \"a\"\npassword = \"$ecret\"\n", nil, "customizations.user[0].password"},
		{"unknown crypt scheme", head + "[[customizations.user]]\nname = \"a\"\npassword = \"$9$abcdefghijkl\"\n", nil, "not a crypt hash"},
		{"lvm puts lvm2 in the image", head + "[[customizations.disk.partitions]]\ntype = \"lvm\"\nminsize = \"1 GiB\"\n[[customizations.disk.partitions.logical_volumes]]\nmountpoint = \"/var\"\nfs_type = \"ext4\"\nminsize = \"1 GiB\"\n", nil, `package "lvm2" not found in any repository`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeBlueprint(t, tc.bp)
			_, err := lockFixture(t, p, tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestDistroSources(t *testing.T) {
	defs := fixtureDefs(t)
	d := defs.Distros["testdist"]
	host := []repo.Source{
		{URI: "http://mirror.invalid/debian", Suite: "trixie", Components: []string{"main", "contrib"}},
		{URI: "http://mirror.invalid/debian", Suite: "trixie-updates", Components: []string{"main"}},
		{URI: "http://sec.invalid/debian-security", Suite: "trixie-security", Components: []string{"main"}},
	}
	got, err := DistroSources(d, host)
	if err != nil {
		t.Fatal(err)
	}
	want := []repo.Source{
		{URI: "http://mirror.invalid/debian", Suite: "bookworm", Components: []string{"main"}, SignedBy: d.Keyring},
		{URI: "http://sec.invalid/debian-security", Suite: "bookworm-security", Components: []string{"main"}, SignedBy: d.Keyring},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := DistroSources(d, host[2:]); err == nil || !strings.Contains(err.Error(), "--repo") {
		t.Errorf("no release suite on the host: got %v", err)
	}
}

func TestCheck(t *testing.T) {
	src, err := os.ReadFile("../../testdata/lock/blueprint.toml")
	if err != nil {
		t.Fatal(err)
	}
	p := writeBlueprint(t, string(src))
	lf, err := lockFixture(t, p)
	if err != nil {
		t.Fatal(err)
	}
	opts := []Option{WithDefs(fixtureDefs(t)), WithFetcher(&fixtureFetcher{packages: "../../testdata/lock/Packages"}),
		WithSources(fixtureSources[0]), WithToolVersion("ibuild test")}
	check := func() error {
		bp, err := blueprint.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		return Check(context.Background(), lf, "bp.lock.json", bp, p, opts...)
	}
	if err := check(); err != nil {
		t.Fatalf("fresh lockfile: %v", err)
	}
	// A comment does not make the lockfile stale; a hostname does.
	if err := os.WriteFile(p, append([]byte("# a comment\n"), src...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := check(); err != nil {
		t.Fatalf("after a comment: %v", err)
	}
	if err := os.WriteFile(p, bytes.Replace(src, []byte(`hostname = "fixture"`), []byte(`hostname = "other"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	err = check()
	var se *StaleError
	if !errors.As(err, &se) {
		t.Fatalf("after a hostname change: got %v, want a StaleError", err)
	}
	if !strings.Contains(se.Error(), "the blueprint") || se.Diff == nil {
		t.Fatalf("stale error %v, diff %v", se, se.Diff)
	}
	text := se.Diff.Text()
	for _, want := range []string{`os/hostname: hostname "fixture" → "other"`} {
		if !strings.Contains(text, want) {
			t.Errorf("diff lacks %q:\n%s", want, text)
		}
	}
}

func TestLockExtraFilesystems(t *testing.T) {
	// Raw: extra mountpoints as partitions (composer's default,
	// auto-lvm, would put them on LVM).
	p := writeBlueprint(t, `name = "x"
distro = "testdist"
[customizations]
partitioning_mode = "raw"
[[customizations.filesystem]]
mountpoint = "/"
minsize = "3 GiB"
[[customizations.filesystem]]
mountpoint = "/var/www"
minsize = "2 GiB"
[[customizations.filesystem]]
mountpoint = "/var"
minsize = "1 GiB"
`)
	lf, err := lockFixture(t, p, WithTypes("qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	img := lf.Entries[0].Pipelines[2]
	var got []string
	for _, s := range img.Stages {
		got = append(got, s.Type+" "+optionsWithout(s.Options, "uuid", "hash_seed", "volume_id"))
	}
	want := []string{
		`disk {"filename":"disk.raw","partitions":[` +
			`{"name":"esp","size":260096,"start":2048,"type":"c12a7328-f81f-11d2-ba4b-00a0c93ec93b"},` +
			`{"name":"var","size":2097152,"start":262144,"type":"0fc63daf-8483-4772-8e79-3d69d8477de4"},` +
			`{"name":"var-www","size":4194304,"start":2359296,"type":"0fc63daf-8483-4772-8e79-3d69d8477de4"},` +
			`{"name":"root","size":0,"start":6553600,"type":"4f68bce3-e8cd-4db1-96e7-fbcaf984b709"}],"size":6577717248}`,
		`mkfs-fat {"fat":32,"filename":"disk.raw","label":"ESP","partition":1,"source":{"path":"/boot/efi","pipeline":"os"}}`,
		`mkfs-ext4 {"exclude":["/www/*"],"filename":"disk.raw","label":"var","partition":2,"source":{"path":"/var","pipeline":"os"}}`,
		`mkfs-ext4 {"filename":"disk.raw","label":"var-www","partition":3,"source":{"path":"/var/www","pipeline":"os"}}`,
		`mkfs-ext4 {"exclude":["/boot/efi/*","/var/*"],"filename":"disk.raw","label":"root","partition":4,"source":{"path":"/","pipeline":"os"}}`,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("image pipeline (-want +got):\n%s", d)
	}
}

// optionsWithout is a stage's options as compact JSON less the given keys
// (the derived ids, which other tests pin).
func optionsWithout(raw []byte, keys ...string) string {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return err.Error()
	}
	for _, k := range keys {
		delete(m, k)
		if parts, ok := m["partitions"].([]any); ok {
			for _, p := range parts {
				delete(p.(map[string]any), k)
			}
		}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// TestLockRefusesTypeForArch: a type that cannot be made for an
// architecture is refused at lock, by name, before anything is fetched.
func TestLockRefusesTypeForArch(t *testing.T) {
	bp, err := blueprint.Load("../../testdata/lock/blueprint.toml")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixtureFetcher{packages: "../../testdata/lock/Packages"}
	_, err = Lock(context.Background(), bp, "blueprint.toml", WithDistro("debian-12"), WithFetcher(f),
		WithSources(fixtureSources[0]), WithArches("x86_64", "aarch64"), WithTypes("qcow2", "ova"))
	if err == nil || !strings.Contains(err.Error(), "image type ova cannot be made for aarch64") {
		t.Errorf("got %v, want ova refused for aarch64", err)
	}
	if f.calls != 0 {
		t.Errorf("fetched %d times before refusing", f.calls)
	}
}

// trixieDown fails to fetch debian-13's suites, as a mirror without them
// would.
type trixieDown struct{ fixtureFetcher }

func (f *trixieDown) Fetch(ctx context.Context, srcs []repo.Source, arch string) (*repo.Index, error) {
	if strings.HasPrefix(srcs[0].Suite, "trixie") {
		return nil, fmt.Errorf("fetching %s %s: 404 Not Found", srcs[0].URI, srcs[0].Suite)
	}
	return f.fixtureFetcher.Fetch(ctx, srcs, arch)
}

// A debian-12 btrfs layout needs debian-13's mkfs.btrfs: when its
// repositories cannot be read, lock refuses at the layout's field before
// resolving anything else.
func TestLockBtrfsToolsUnreachable(t *testing.T) {
	p := writeBlueprint(t, `name = "x"
distro = "debian-12"
[[customizations.disk.partitions]]
type = "btrfs"
minsize = "3 GiB"
[[customizations.disk.partitions.subvolumes]]
name = "root"
mountpoint = "/"
`)
	defs, err := distro.Load()
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockFixture(t, p, WithDefs(defs), WithFetcher(&trixieDown{fixtureFetcher{packages: "../../testdata/lock/Packages"}}), WithTypes("qcow2"))
	want := "customizations.disk.partitions: btrfs volumes of debian-12 are made with debian-13's mkfs.btrfs, whose repositories could not be read: fetching http://archive.invalid/debian trixie: 404 Not Found"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
	if !strings.Contains(err.Error(), "bp.toml:3:") {
		t.Errorf("%v: no line of the blueprint", err)
	}
}
