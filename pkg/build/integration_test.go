package build_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/build/buildtest"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/stages"
)

// exportFile copies files of an input tree into the output: the test's
// last pipeline, so the result can be checked without the image stages.
type exportFile struct {
	Source struct {
		Pipeline string `json:"pipeline"`
		Path     string `json:"path"`
	} `json:"source"`
	Glob bool `json:"glob,omitempty"`
}

func (s *exportFile) Run(ctx context.Context, env *stages.Env) error {
	in := env.Inputs[s.Source.Pipeline]
	matches := []string{filepath.Join(in, s.Source.Path)}
	if s.Glob {
		matches, _ = filepath.Glob(filepath.Join(in, s.Source.Path))
		if len(matches) == 0 {
			return fmt.Errorf("nothing matches %s", s.Source.Path)
		}
	}
	for _, m := range matches {
		data, err := os.ReadFile(m)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(env.Tree, filepath.Base(m)), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func init() {
	stages.Register("test-export", 1, func(o json.RawMessage) (stages.Stage, error) {
		var s exportFile
		return &s, stages.Decode(o, &s)
	})
}

// initrdFiles lists an initramfs: a zstd-compressed cpio archive (newc)
// with no early uncompressed part, as the initramfs stage makes it. The
// small files' contents come with their names.
func initrdFiles(t *testing.T, initrd []byte) map[string]string {
	t.Helper()
	dec, err := zstd.NewReader(bytes.NewReader(initrd))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	data, err := io.ReadAll(dec)
	if err != nil {
		t.Fatalf("decompressing the initrd: %v", err)
	}
	files := map[string]string{}
	pad := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; off+110 <= len(data); {
		h := data[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("initrd: no newc header at %d", off)
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("initrd: header at %d: %v", off, err)
			}
			return int(v)
		}
		size, nameLen := field(6), field(11)
		name := strings.TrimPrefix(strings.TrimSuffix(string(data[off+110:off+110+nameLen]), "\x00"), "./")
		body := off + pad(110+nameLen)
		if name == "TRAILER!!!" {
			break
		}
		if size <= 4096 {
			files[name] = string(data[body : body+size])
		} else {
			files[name] = ""
		}
		off = body + pad(size)
	}
	return files
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBuildDebianTrees builds a real build root and a bootable-style os tree
// (systemd, kernel, initramfs) from packages resolved against the host's
// apt sources.
func TestBuildDebianTrees(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Debian trees")
	}
	buildtest.Skip(t)
	arch := "amd64"
	buildSet := buildtest.Resolve(t, arch, "?essential", "usr-is-merged", "e2fsprogs", "dosfstools", "mtools")
	osSet := buildtest.Resolve(t, arch, "?essential", "usr-is-merged", "systemd", "systemd-sysv", "udev",
		"linux-image-amd64", "initramfs-tools", "zstd", "e2fsprogs")
	all := buildtest.Merge(buildSet, osSet)
	t.Logf("build root: %s; os: %s", buildtest.Describe(buildSet), buildtest.Describe(osSet))
	kernel := ""
	for _, p := range osSet {
		if strings.HasPrefix(p.Name, "linux-image-") && strings.HasSuffix(p.Name, "-"+arch) && p.Name != "linux-image-"+arch {
			kernel = strings.TrimPrefix(p.Name, "linux-image-")
		}
	}
	if kernel == "" {
		t.Fatal("no kernel package in the os set")
	}
	excludes := map[string]any{
		"path_exclude": []string{"/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*"},
		"path_include": []string{"/usr/share/doc/*/copyright"},
	}
	debs := func(set []manifest.Package) json.RawMessage {
		o := map[string]any{"packages": buildtest.Refs(set)}
		for k, v := range excludes {
			o[k] = v
		}
		return mustJSON(t, o)
	}
	lf := &manifest.Lockfile{
		Version:         manifest.FormatVersion,
		SourceDateEpoch: 1700000000,
		Packages:        all,
		Entries: []manifest.Entry{{
			Distro: "debian-12", Arch: arch, Type: "test",
			Pipelines: []manifest.Pipeline{
				{Name: "build", Stages: []manifest.Stage{{Type: "debs", Options: debs(buildSet)}}},
				{Name: "os", Build: "build", Stages: []manifest.Stage{
					{Type: "debs", Options: debs(osSet)},
					{Type: "initramfs", Options: mustJSON(t, map[string]any{
						"modules":  []string{"virtio_blk", "virtio_scsi", "virtio_pci", "virtio_net", "nvme", "ext4", "sd_mod", "ahci"},
						"compress": "zstd", "fstype": "ext4"})},
				}},
				{Name: "out", Build: "build", Stages: []manifest.Stage{
					{Type: "test-export", Options: mustJSON(t, map[string]any{"source": map[string]string{"pipeline": "os", "path": "/var/lib/dpkg/status"}})},
					{Type: "test-export", Options: mustJSON(t, map[string]any{"source": map[string]string{"pipeline": "os", "path": "/boot/initrd.img-*"}, "glob": true})},
					// The symlinks the kernel's postinst would have made.
					{Type: "test-export", Options: mustJSON(t, map[string]any{"source": map[string]string{"pipeline": "os", "path": "/initrd.img"}})},
					{Type: "test-export", Options: mustJSON(t, map[string]any{"source": map[string]string{"pipeline": "os", "path": "/vmlinuz"}})},
					{Type: "test-export", Options: mustJSON(t, map[string]any{"source": map[string]string{"pipeline": "os", "path": "/etc/initramfs-tools/conf.d/ibuild.conf"}})},
				}},
			},
		}},
	}
	if err := lf.Validate(); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "cache")
	// Packages come from the shared test cache: link them in.
	if err := os.MkdirAll(filepath.Join(cache, "sources"), 0o755); err != nil {
		t.Fatal(err)
	}
	buildtest.Sources(t, all)
	if err := os.Symlink(filepath.Join(buildtest.CacheDir(t), "sources", "sha256"), filepath.Join(cache, "sources", "sha256")); err != nil {
		t.Fatal(err)
	}
	mounts := func() string { b, _ := os.ReadFile("/proc/self/mountinfo"); return string(b) }
	before := mounts()

	run := func(name string, lf *manifest.Lockfile) (*build.Result, []string) {
		var timings []string
		var log bytes.Buffer
		out := t.TempDir()
		start := time.Now()
		res, err := build.Build(context.Background(), lf, arch, "test", build.WithCacheDir(cache), build.WithOutputDir(out),
			build.WithLog(&log), build.WithEvents(func(e build.Event) {
				switch e := e.(type) {
				case build.StageDone:
					timings = append(timings, fmt.Sprintf("%s/%d %s: %s (cached %v)", e.Pipeline, e.Index, e.Type, e.Duration.Round(time.Millisecond), e.CacheHit))
				case build.Commit:
					timings = append(timings, fmt.Sprintf("%s/%d commit: %s", e.Pipeline, e.Index, e.Duration.Round(time.Millisecond)))
				}
			}))
		timings = append(timings, fmt.Sprintf("total: %s", time.Since(start).Round(time.Millisecond)))
		for _, l := range strings.Split(log.String(), "\n") {
			if strings.HasPrefix(l, "debs: ") {
				timings = append(timings, l)
			}
		}
		t.Logf("%s build:\n  %s", name, strings.Join(timings, "\n  "))
		if err != nil {
			lines := strings.Split(log.String(), "\n")
			t.Fatalf("%s build: %v\nlog tail:\n%s", name, err, strings.Join(lines[max(0, len(lines)-80):], "\n"))
		}
		return res, timings
	}
	res, _ := run("cold", lf)
	if after := mounts(); after != before {
		t.Errorf("host mounts changed during the build")
	}
	files := map[string]build.OutputFile{}
	for _, f := range res.Files {
		files[f.Name] = f
	}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "ibuild.conf initrd.img initrd.img-"+kernel+" status vmlinuz" {
		t.Fatalf("outputs: %v", names)
	}
	// dpkg: every os package installed.
	status, _ := os.ReadFile(files["status"].Path)
	installed := map[string]string{}
	for _, para := range strings.Split(string(status), "\n\n") {
		var name, archf, version, st string
		for _, l := range strings.Split(para, "\n") {
			k, v, _ := strings.Cut(l, ": ")
			switch k {
			case "Package":
				name = v
			case "Architecture":
				archf = v
			case "Version":
				version = v
			case "Status":
				st = v
			}
		}
		if name != "" {
			installed[name+":"+archf+"="+version] = st
		}
	}
	for _, ref := range buildtest.Refs(osSet) {
		if installed[ref] != "install ok installed" {
			t.Errorf("%s: %q", ref, installed[ref])
		}
	}
	initrd, _ := os.ReadFile(files["initrd.img-"+kernel].Path)
	if len(initrd) < 1<<20 || len(initrd) > 30<<20 {
		t.Errorf("initrd size %d", len(initrd))
	}
	if !bytes.Contains(initrd[:min(len(initrd), 1<<20)], []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		t.Errorf("initrd is not zstd-compressed")
	}
	if link, _ := os.ReadFile(files["initrd.img"].Path); !bytes.Equal(link, initrd) {
		t.Errorf("/initrd.img is not /boot/initrd.img-%s", kernel)
	}
	if fi, err := os.Stat(files["vmlinuz"].Path); err != nil || fi.Size() < 1<<20 {
		t.Errorf("/vmlinuz: %v", err)
	}
	// The listed modules are in it, and init does not load them all: udev
	// loads what the hardware needs.
	inInitrd := initrdFiles(t, initrd)
	for _, m := range []string{"virtio_blk", "virtio_scsi", "nvme", "ext4", "ahci"} {
		found := false
		for name := range inInitrd {
			if base := path.Base(name); strings.HasPrefix(base, m+".ko") {
				found = true
			}
		}
		if !found {
			t.Errorf("the initrd has no %s module", m)
		}
	}
	if mods := strings.TrimSpace(inInitrd["conf/modules"]); mods != "" {
		t.Errorf("the initrd's conf/modules force-loads %q", mods)
	}

	// Again: everything comes from the cache.
	_, timings := run("cached", lf)
	for _, l := range timings {
		if strings.Contains(l, "cached false") {
			t.Errorf("ran again: %s", l)
		}
	}
	// Change the initramfs options: only that stage and the export rerun.
	lf.Entries[0].Pipelines[1].Stages[1].Options = mustJSON(t, map[string]any{
		"modules": []string{"virtio_blk", "virtio_pci", "ext4"}, "compress": "zstd", "fstype": "ext4"})
	_, timings = run("initramfs changed", lf)
	ran := []string{}
	for _, l := range timings {
		if strings.Contains(l, "cached false") {
			ran = append(ran, strings.Fields(l)[0])
		}
	}
	if strings.Join(ran, " ") != "os/1 out/0 out/1 out/2 out/3 out/4" {
		t.Errorf("stages run after changing the initramfs options: %v", ran)
	}
	if after := mounts(); after != before {
		t.Errorf("host mounts changed during the builds")
	}
	if _, err := os.Stat(filepath.Join(cache, "tmp")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Error(err)
	}
}
