package main

// TestReproducible locks testdata/e2e/boot.toml for all ten image types
// (and testdata/e2e/extras.toml, the customizations boot.toml leaves out, as
// a tar), builds everything twice, independently, and compares the bytes;
// then it checks `ibuild verify`, boots every disk format (by UEFI and by
// BIOS, on the bus its platform uses, or proven to hold the very bytes of
// a disk that boots) and runs a command in the container, tar and WSL root
// file systems.
//
// The two builds differ in everything a build must not depend on: cache
// directory (both cold), TMPDIR, work directory name, the order the types are
// built in (so each tree is made at another wall-clock time, fresh in one
// build where the other takes it from its cache), TZ, LANG, GOMAXPROCS and
// umask. A third, warm build makes the raw disk again from a cached os tree.
//
// Sources of non-determinism, and what removes each:
//   - timestamps: every stage clamps to the lockfile's source_date_epoch (the
//     newest Release date): mkfs-ext4 sets atime/ctime to it and clamps mtime
//     with debugfs after mkfs.ext4 -d, and E2FSPROGS_FAKE_TIME fixes the
//     superblock, lost+found and journal times; mkfs-fat stages a copy with
//     clamped times for mcopy -m, with mkfs.fat --invariant; the tar writer
//     (tar, wsl, OCI layer) clamps mtimes and drops atime/ctime; gzip headers
//     carry no name or time; the OCI config's created is the epoch; the VHD
//     footer's time stamp is the epoch.
//   - SOURCE_DATE_EPOCH for every tool the build runs (the runner adds it):
//     /etc/shadow's last-change day (shadow's useradd), Python bytecode
//     (py_compile writes checked-hash .pyc files when it is set), the
//     initramfs (initramfs-tools then clamps mtimes, sorts the cpio members,
//     runs gzip -n and zstd single-threaded, and drops ldconfig's aux-cache).
//   - identifiers: the GPT disk and partition GUIDs, file system UUIDs, the
//     ext4 directory hash seed and the FAT volume id come from the lockfile
//     (derived from the lockfile.s id_seed, the distro, the arch and the
//     partition.s role: an edit of the blueprint leaves them alone);
//     the VMDK CID and the VHD UUID are derived from the image's contents;
//     the OVF envelope has fixed ids.
//   - per-machine state: /etc/machine-id is empty (made at first boot), SSH
//     host keys are removed (a unit makes them at first boot),
//     /var/lib/systemd/random-seed, /var/cache/ldconfig/aux-cache, debconf's
//     *-old caches, apt lists and caches, /tmp and /var/tmp are removed, and
//     the logs (dpkg, apt, alternatives) truncated, by the cleanup stage.
//   - order: tar members are written in name order by a Go writer with
//     numeric owners only; mkfs.ext4 -d reads directories with scandir's
//     alphasort (LC_ALL=C); files are copied into the ESP in name order,
//     directories first; packages are configured in a fixed dependency order.
//   - the build host: commands run in namespaces with a fixed host name, no
//     network and an environment of their own (PATH, LC_ALL=C.UTF-8, HOME,
//     SOURCE_DATE_EPOCH), never the caller's TZ or locale.
//   - the caller's umask (found here: under umask 077, files and directories
//     the stages make, /etc/dpkg/dpkg.cfg.d/ibuild-excludes, /var/lib/dpkg/arch,
//     /var/lib/apt/lists… and the root itself, came out 0600/0700): the build
//     pins the umask to 022, and namespaced commands get 022 too.
//   - compression: gzip and zstd in Go, whose output does not depend on the
//     number of CPUs; GNU tar's sparse detection reads zeros
//     (--hole-detection=raw) rather than the file's layout on disk.
// None of /etc/.updated, /var/.updated, man-db or fontconfig caches is in
// these images (systemd makes the first two at boot).
//
// Found on the way, not sources of difference but blockers of the ten types:
// the ova stage now takes its VMDK from its own pipeline's output directory
// (the image definition names a file, not a pipeline), the oci-archive stage
// takes the entry's architecture when its options leave it out, and the
// systemd stage makes the links itself in trees without systemctl
// (containers).

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// reproTypes are the ten image types, in the first build's order.
var reproTypes = []string{"raw", "qcow2", "vmdk", "ova", "vhd", "ami", "gce", "tar", "wsl", "container"}

// reproDiskTypes hold a bootable disk (after unpacking for ova and gce).
var reproDiskTypes = map[string]bool{"raw": true, "qcow2": true, "vmdk": true, "ova": true, "vhd": true, "ami": true, "gce": true}

// reproFile is one output file of a build.
type reproFile struct {
	name, path, sha256 string
	size               int64
}

// reproJob is one `ibuild build`: an image type of a lockfile, named by
// the type for boot.toml's lockfile.
type reproJob struct{ name, lock, typ string }

// reproBuild is one of the two independent builds.
type reproBuild struct {
	name         string
	cache, out   string
	env          []string
	umask        string
	order        []reproJob
	files        map[string][]reproFile // by job name
	took         map[string]time.Duration
	removed      map[string]bool // jobs whose outputs were checked and removed
	start, ended time.Time

	mu   *sync.Mutex       // guards files and removed, shared by both builds
	done func(name string) // called after each job
}

// run builds every job, in order, with the real binary.
func (b *reproBuild) run(bin string) error {
	b.start = time.Now()
	defer func() { b.ended = time.Now() }()
	for _, j := range b.order {
		files, d, err := ibuildBuild(bin, j.lock, j.typ, filepath.Join(b.out, j.name), b.cache, b.umask, b.env)
		if err != nil {
			return fmt.Errorf("build %s: %w", b.name, err)
		}
		b.mu.Lock()
		b.files[j.name], b.took[j.name] = files, d
		b.mu.Unlock()
		if b.done != nil {
			b.done(j.name)
		}
	}
	return nil
}

// reproDropSame removes build b's outputs of job name once build a has
// made the same (as reported, and as b's files hash), keeping their
// digests: until the end of the builds the disk would otherwise hold two
// of every image (CI's disk filled up there).
func reproDropSame(t *testing.T, a, b *reproBuild, name string) {
	b.mu.Lock()
	fa, okA := a.files[name]
	fb, okB := b.files[name]
	same := okA && okB && !b.removed[name] && len(fa) == len(fb)
	for i := range fb {
		same = same && fa[i].name == fb[i].name && fa[i].sha256 == fb[i].sha256
	}
	if same {
		b.removed[name] = true
	}
	b.mu.Unlock()
	if !same {
		return
	}
	for _, f := range fb {
		if sum, err := reproSHA256(f.path); err != nil || sum != f.sha256 {
			// Kept for reproCheckDigests to report.
			b.mu.Lock()
			b.removed[name] = false
			b.mu.Unlock()
			return
		}
	}
	for _, f := range fb {
		if err := os.Remove(f.path); err != nil {
			t.Error(err)
		}
	}
	// The converted disks are cached by both builds too, and nothing
	// reads them again (ibuild verify and the warm build read the os and
	// image trees).
	if reproExports[name] {
		for _, c := range []string{a.cache, b.cache} {
			if err := reproDropPipeline(filepath.Join(c, "build"), name); err != nil {
				t.Error(err)
			}
		}
	}
}

// reproExports are the image types whose last pipeline, named after the
// type, only converts the image pipeline's disk.
var reproExports = map[string]bool{"qcow2": true, "vmdk": true, "ova": true, "vhd": true, "gce": true}

// reproDropPipeline removes a build cache's trees of one pipeline.
func reproDropPipeline(cache, pipeline string) error {
	objs, err := cacheObjects(cache, pipeline)
	for _, obj := range objs {
		if err == nil {
			err = os.RemoveAll(obj)
		}
	}
	return err
}

// ibuildBuild runs `ibuild build` for one type under a umask and extra
// environment, and returns the files it reported.
func ibuildBuild(bin, lockPath, typ, out, cache, umask string, env []string) ([]reproFile, time.Duration, error) {
	args := []string{"-c", `umask "$0" && exec "$@"`, umask, bin,
		"build", lockPath, "--type", typ, "--arch", "x86_64", "-o", out, "--cache", cache}
	cmd := exec.Command("/bin/sh", args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return nil, 0, fmt.Errorf("ibuild build --type %s: %v\n%s", typ, err, stderr.String())
	}
	var files []reproFile
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 3 || !strings.HasPrefix(f[2], "sha256:") {
			return nil, 0, fmt.Errorf("ibuild build --type %s: output line %q", typ, l)
		}
		size, _ := strconv.ParseInt(f[1], 10, 64)
		files = append(files, reproFile{name: filepath.Base(f[0]), path: f[0], sha256: strings.TrimPrefix(f[2], "sha256:"), size: size})
	}
	return files, time.Since(start), nil
}

// reproSHA256 hashes a file with a large buffer (sparse 4 GiB disks).
func reproSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 4<<20)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func TestReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("reproducibility: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("building needs root")
	}
	need(t, "qemu-img", "qemu-system-x86_64", "tar", "zstd", "skopeo", "chroot", "sfdisk", "debugfs", "mdir")
	needArchive(t)
	testStart := time.Now()
	dir := t.TempDir()
	bin := filepath.Join(dir, "ibuild")
	run(t, "go", "build", "-o", bin, ".")
	lockPath := filepath.Join(dir, "all.lock.json")
	run(t, bin, "lock", "../../testdata/e2e/boot.toml", "--type", strings.Join(reproTypes, ","), "--arch", "x86_64",
		"-o", lockPath, "--cache", testCache(t))
	extrasLock := filepath.Join(dir, "extras.lock.json")
	run(t, bin, "lock", "../../testdata/e2e/extras.toml", "--type", "tar", "--arch", "x86_64", "-o", extrasLock, "--cache", testCache(t))
	var jobs []reproJob
	for _, typ := range reproTypes {
		jobs = append(jobs, reproJob{typ, lockPath, typ})
	}
	jobs = append(jobs, reproJob{"extras-tar", extrasLock, "tar"})

	// Both builds at once on the two cores; the second builds the types in
	// the opposite order, so every tree is made minutes apart.
	var mu sync.Mutex // the builds' files
	mk := func(name string, order []reproJob, umask string, env ...string) *reproBuild {
		tmp := filepath.Join(dir, "tmp-"+name)
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			t.Fatal(err)
		}
		return &reproBuild{name: name, cache: filepath.Join(dir, "cache-"+name), out: filepath.Join(dir, "out-"+name),
			umask: umask, order: order, env: append([]string{"TMPDIR=" + tmp}, env...),
			files: map[string][]reproFile{}, took: map[string]time.Duration{}, removed: map[string]bool{}, mu: &mu}
	}
	reversed := slices.Clone(jobs)
	slices.Reverse(reversed)
	a := mk("a", jobs, "022", "TZ=UTC")
	b := mk("b", reversed, "077", "TZ=Pacific/Chatham", "LANG=de_DE.UTF-8", "GOMAXPROCS=1")
	a.done = func(name string) { reproDropSame(t, a, b, name) }
	b.done = a.done
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, bld := range []*reproBuild{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = bld.run(bin)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	t.Logf("builds: a %s, b %s (at the same time, %s in all)", a.ended.Sub(a.start).Round(time.Second),
		b.ended.Sub(b.start).Round(time.Second), time.Since(testStart).Round(time.Second))

	// The digests ibuild reported, checked by hashing here, then compared.
	reproCheckDigests(t, a, b)
	var table strings.Builder
	fmt.Fprintf(&table, "%-10s %-14s %-64s %-64s %6s %6s\n", "type", "file", "sha256 (build a)", "sha256 (build b)", "a", "b")
	for _, j := range jobs {
		typ := j.name
		fa, fb := a.files[typ], b.files[typ]
		for i := range max(len(fa), len(fb)) {
			var x, y reproFile
			if i < len(fa) {
				x = fa[i]
			}
			if i < len(fb) {
				y = fb[i]
			}
			fmt.Fprintf(&table, "%-10s %-14s %-64s %-64s %5.0fs %5.0fs\n", typ, x.name, x.sha256, y.sha256,
				a.took[typ].Seconds(), b.took[typ].Seconds())
			if x.name != y.name || x.sha256 != y.sha256 {
				t.Errorf("%s: build a made %s sha256 %s, build b %s sha256 %s", typ, x.name, x.sha256, y.name, y.sha256)
				if x.path != "" && y.path != "" {
					reproExplain(t, filepath.Join(dir, "explain-"+typ), j.typ, x.path, y.path)
				}
			}
		}
	}
	t.Logf("outputs:\n%s", table.String())
	// What follows needs build a's outputs and build b's cache only: the
	// disk holds two of everything until then (CI's disk filled here).
	if !t.Failed() {
		reproRemove(t, b.out)
	}
	t.Run("verify", func(t *testing.T) { reproVerify(t, bin, lockPath, a, b) })
	reproRemove(t, b.cache)

	t.Run("warm", func(t *testing.T) {
		// The raw disk again from build a's cache without its image
		// pipeline: the os tree comes back from the store's archive.
		removed := reproDropObjects(t, filepath.Join(a.cache, "build"), "image")
		files, d, err := ibuildBuild(bin, lockPath, "raw", filepath.Join(dir, "out-warm"), a.cache, "022", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("raw from a warm cache (%d image trees dropped): %s sha256 %s in %s", removed, files[0].name, files[0].sha256, d.Round(time.Second))
		if want := a.files["raw"][0].sha256; files[0].sha256 != want {
			t.Errorf("raw from a warm cache: sha256 %s, cold builds %s", files[0].sha256, want)
			reproExplain(t, filepath.Join(dir, "explain-warm"), "raw", files[0].path, a.files["raw"][0].path)
		}
		os.RemoveAll(filepath.Join(dir, "out-warm"))
	})

	t.Run("boot", func(t *testing.T) { reproBootMatrix(t, dir, a) })
	t.Run("unpack", func(t *testing.T) { reproUnpack(t, dir, a) })
	t.Logf("TestReproducible took %s", time.Since(testStart).Round(time.Second))
}

// reproRemove removes a build's directory once nothing needs it.
func reproRemove(t *testing.T, dir string) {
	t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		t.Error(err)
	}
}

// reproCheckDigests hashes every output of both builds and compares with
// what ibuild reported.
func reproCheckDigests(t *testing.T, builds ...*reproBuild) {
	t.Helper()
	var files []reproFile
	for _, b := range builds {
		for name, fs := range b.files {
			if !b.removed[name] { // else checked before removal
				files = append(files, fs...)
			}
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := 0
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next == len(files) {
					mu.Unlock()
					return
				}
				f := files[next]
				next++
				mu.Unlock()
				sum, err := reproSHA256(f.path)
				if err != nil {
					t.Error(err)
				} else if sum != f.sha256 {
					t.Errorf("%s: ibuild reported sha256 %s, the file has %s", f.path, f.sha256, sum)
				}
			}
		}()
	}
	wg.Wait()
}

// reproDropObjects removes the cached trees of a pipeline from a build
// cache and returns how many.
func reproDropObjects(t *testing.T, cache, pipeline string) int {
	t.Helper()
	objs := pipelineObjects(t, cache, pipeline)
	for _, obj := range objs {
		if err := os.RemoveAll(obj); err != nil {
			t.Fatal(err)
		}
	}
	return len(objs)
}

// pipelineObjects returns the object directories of a build cache
// (objects/<key>/meta.json names the pipeline) that hold a tree of
// pipeline; it fails the test when there are none.
func pipelineObjects(t *testing.T, cache, pipeline string) []string {
	t.Helper()
	objs, err := cacheObjects(cache, pipeline)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) == 0 {
		t.Fatalf("no cached %s trees in %s", pipeline, cache)
	}
	return objs
}

// cacheObjects returns the object directories of a build cache that hold
// a tree of pipeline (objects/<key>/meta.json names the pipeline).
func cacheObjects(cache, pipeline string) ([]string, error) {
	metas, err := filepath.Glob(filepath.Join(cache, "objects", "*", "meta.json"))
	if err != nil {
		return nil, err
	}
	var objs []string
	for _, m := range metas {
		var meta struct{ Pipeline string }
		data, err := os.ReadFile(m)
		if err == nil {
			err = json.Unmarshal(data, &meta)
		}
		if err != nil {
			return nil, err
		}
		if meta.Pipeline == pipeline {
			objs = append(objs, filepath.Dir(m))
		}
	}
	return objs, nil
}

// reproVerify checks ibuild verify: build a's raw disk is what build b's
// cache holds; a changed container archive is not.
func reproVerify(t *testing.T, bin, lockPath string, a, b *reproBuild) {
	verify := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, append([]string{"verify", lockPath, "--arch", "x86_64"}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}

	raw := a.files["raw"][0]
	start := time.Now()
	out, errOut, code := verify(raw.path, "--type", "raw", "--cache", b.cache, "--reuse-trees")
	want := fmt.Sprintf("%s is what %s produces (sha256 %s)\n", raw.path, lockPath, raw.sha256)
	if code != 0 || out != want {
		t.Errorf("verify raw: exit %d, stdout %q, want %q; stderr:\n%s", code, out, want, errOut)
	}
	t.Logf("verify raw against build b's trees: %s", time.Since(start).Round(100*time.Millisecond))

	c := a.files["container"][0]
	changed := filepath.Join(t.TempDir(), c.name)
	data, err := os.ReadFile(c.path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 1 // in the archive's end-of-archive padding
	if err := os.WriteFile(changed, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	out, errOut, code = verify(changed, "--type", "container", "--cache", b.cache, "--reuse-trees")
	for _, s := range []string{changed + " is not what " + lockPath + " produces", hex.EncodeToString(sum[:]), c.sha256} {
		if code != 1 || !strings.Contains(errOut, s) {
			t.Errorf("verify of a changed container archive: exit %d, stderr %q, want exit 1 and %q (stdout %q)", code, errOut, s, out)
		}
	}

	// verify without --reuse-trees (every stage run again) is
	// TestInterrupt's last step: it proves a rerun's output, and that no
	// tree came from the cache.
}

// reproBootMatrix proves every disk format of build a boots, by UEFI and by
// BIOS, two machines at a time.
//
// A TCG boot costs a core for a minute or more, so a disk is booted only
// when it differs from every disk booted already in what the guest sees.
// The generic-kernel disks: qcow2, vmdk and the OVA's disk hold the bytes
// of the raw disk (qemu-img compare reads each through QEMU's own driver
// for its format, the driver a boot reads it through); they boot here on
// SATA (vmdk by UEFI, the OVA's by BIOS: VMware's bus, and AHCI in the
// initramfs), and TestBuildAndBoot boots the same blueprint's qcow2 by
// UEFI and raw by BIOS on virtio. The cloud-kernel disks (ami, gce, vhd:
// one tree and one disk layout but for cloud-init's list of data sources)
// boot on virtio: the ami by BIOS, and by UEFI with a NoCloud seed; the
// gce by UEFI and the vhd by BIOS, each without one, as the ami once did.
func reproBootMatrix(t *testing.T, dir string, a *reproBuild) {
	if _, err := os.Stat("/usr/share/OVMF/OVMF_CODE_4M.fd"); err != nil {
		t.Skip("ovmf is not installed")
	}
	bootDir := filepath.Join(dir, "boot")
	if err := os.MkdirAll(bootDir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := func(typ string) string { return a.files[typ][0].path }
	// The appliance's disk and GCE's disk.raw, unpacked.
	ovaDir, gceDir := filepath.Join(bootDir, "ova"), filepath.Join(bootDir, "gce")
	for _, d := range []string{ovaDir, gceDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run(t, "tar", "-xf", file("ova"), "-C", ovaDir, "disk.vmdk")
	run(t, "tar", "-xzf", file("gce"), "-C", gceDir, "disk.raw")

	// The same guest-visible bytes as the raw disk: exit status 0 and
	// "Images are identical." (qemu-img compare fails on a difference,
	// and on a size difference unless the excess reads as zeros).
	start := time.Now()
	for _, d := range []struct{ typ, disk, format string }{
		{"qcow2", file("qcow2"), "qcow2"},
		{"vmdk", file("vmdk"), "vmdk"},
		{"ova", filepath.Join(ovaDir, "disk.vmdk"), "vmdk"},
	} {
		if c := run(t, "qemu-img", "compare", "-f", "raw", "-F", d.format, file("raw"), d.disk); !strings.Contains(c, "identical") {
			t.Errorf("%s: qemu-img compare with the raw disk: %s", d.typ, c)
		}
	}
	t.Logf("qcow2, vmdk and the OVA's disk hold the raw disk's bytes (qemu-img compare, %s)", time.Since(start).Round(100*time.Millisecond))

	// VMware attaches the OVA's disk on SATA (its OVF says so): the vmdk
	// and ova boots use q35's AHCI; the cloud kernel has no AHCI driver,
	// so the others use virtio, as KVM and the clouds do.
	jobs := []bootOpts{
		{firmware: "uefi", disk: file("vmdk"), format: "vmdk", bus: "sata", label: "vmdk-uefi"},
		{firmware: "bios", disk: filepath.Join(ovaDir, "disk.vmdk"), format: "vmdk", bus: "sata", label: "ova-bios"},
		{firmware: "bios", disk: file("ami"), format: "raw", bus: "virtio", label: "ami-bios"},
		{firmware: "uefi", disk: filepath.Join(gceDir, "disk.raw"), format: "raw", bus: "virtio", label: "gce-uefi"},
		{firmware: "bios", disk: file("vhd"), format: "vpc", bus: "virtio", label: "vhd-bios"},
	}
	// The ami by UEFI with a NoCloud seed: cloud-init runs, and makes the
	// host keys sshd is configured for (ed25519 and ecdsa, no RSA) before
	// the units that fill in missing ones.
	seedDir := filepath.Join(bootDir, "seed")
	if err := os.MkdirAll(seedDir, 0o755); err != nil {
		t.Fatal(err)
	}
	jobs = append(jobs, bootOpts{firmware: "uefi", disk: file("ami"), format: "raw", bus: "virtio", label: "ami-uefi-cloud-init",
		seed:   noCloudSeed(t, seedDir, "ibuild-boot"),
		want:   []string{"DataSourceNoCloud", "Generating public/private ed25519 key pair", "Generating public/private ecdsa key pair"},
		refuse: []string{"Generating public/private rsa key pair"}})
	type result struct {
		label string
		secs  float64
		err   error
	}
	results := make([]result, len(jobs))
	start = time.Now()
	sem := make(chan struct{}, 2) // one core each
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			secs, err := bootDisk(bootDir, j)
			results[i] = result{j.label, secs, err}
		}()
	}
	wg.Wait()
	var table strings.Builder
	for i, r := range results {
		if r.err != nil {
			t.Errorf("boot %s (%s on %s): %v", r.label, jobs[i].format, jobs[i].bus, r.err)
			continue
		}
		fmt.Fprintf(&table, "%-20s %-6s %-6s %5.1f s\n", r.label, jobs[i].format, jobs[i].bus, r.secs)
	}
	t.Logf("marker and login prompt (%d boots, two at a time, %s):\n%s", len(jobs), time.Since(start).Round(time.Second), table.String())
}

// reproUnpack runs a command in the container, tar and WSL root file
// systems (podman run cannot work here: FACTS.md), after importing the
// container with skopeo and, where installed, podman.
func reproUnpack(t *testing.T, dir string, a *reproBuild) {
	base := filepath.Join(dir, "unpack")
	roots := map[string]string{}
	for _, typ := range []string{"tar", "wsl", "container", "extras-tar"} {
		roots[typ] = filepath.Join(base, typ)
		if err := os.MkdirAll(roots[typ], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file := func(typ string) string { return a.files[typ][0].path }
	tarX := []string{"--numeric-owner", "--xattrs", "--xattrs-include=*", "-xp"}
	run(t, "tar", append(tarX, "--zstd", "-f", file("tar"), "-C", roots["tar"])...)
	run(t, "tar", append(tarX, "-z", "-f", file("wsl"), "-C", roots["wsl"])...)
	run(t, "tar", append(tarX, "--zstd", "-f", file("extras-tar"), "-C", roots["extras-tar"])...)

	// The container: skopeo reads the OCI archive and copies it out; the
	// layer is the root file system.
	ociDir := filepath.Join(base, "oci")
	run(t, "skopeo", "copy", "oci-archive:"+file("container"), "dir:"+ociDir)
	var m struct {
		Layers []struct{ Digest string }
	}
	data, err := os.ReadFile(filepath.Join(ociDir, "manifest.json"))
	if err == nil {
		err = json.Unmarshal(data, &m)
	}
	if err != nil || len(m.Layers) != 1 {
		t.Fatalf("skopeo's manifest: %v %s", err, data)
	}
	run(t, "tar", append(tarX, "-z", "-f", filepath.Join(ociDir, strings.TrimPrefix(m.Layers[0].Digest, "sha256:")), "-C", roots["container"])...)
	if _, err := exec.LookPath("podman"); err == nil {
		// podman wants a run root of at most 50 characters.
		runRoot, err := os.MkdirTemp("", "podman-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(runRoot)
		// stdout alone: podman warns on stderr.
		podman := func(args ...string) string {
			t.Helper()
			cmd := exec.Command("podman", append([]string{"--root", filepath.Join(base, "podman"), "--runroot", runRoot, "--storage-driver", "vfs"}, args...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
			}
			return string(out)
		}
		t.Logf("podman load: %s", strings.TrimSpace(podman("load", "-i", file("container"))))
		var inspect []struct{ Config struct{ Cmd []string } }
		if err := json.Unmarshal([]byte(podman("image", "inspect", strings.TrimSpace(podman("images", "-q")))), &inspect); err != nil {
			t.Fatal(err)
		}
		if len(inspect) != 1 || strings.Join(inspect[0].Config.Cmd, " ") != "/bin/bash" {
			t.Errorf("podman image inspect: %+v", inspect)
		}
	}

	script := `. /etc/os-release; echo "codename=$VERSION_CODENAME"; echo "admin=$(id -u admin)"; ` +
		`echo "motd=$(cat /etc/motd)"; test -x /usr/local/bin/ibuild-marker && echo marker=yes; ` +
		`echo "ssh=$(readlink /etc/systemd/system/multi-user.target.wants/ssh.service)"`
	for _, typ := range []string{"tar", "wsl", "container"} {
		out := run(t, "chroot", roots[typ], "/bin/sh", "-c", script)
		for _, want := range []string{"codename=bookworm", "admin=1200", "motd=Built by ibuild.", "marker=yes", "ssh=/lib/systemd/system/ssh.service"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: %q not in the command's output:\n%s", typ, want, out)
			}
		}
		t.Logf("%s: %s", typ, strings.Join(strings.Fields(out), " "))
	}
	if conf, err := os.ReadFile(filepath.Join(roots["wsl"], "etc/wsl.conf")); err != nil || !strings.Contains(string(conf), "systemd=true") {
		t.Errorf("wsl: /etc/wsl.conf: %q %v", conf, err)
	}
	// extras.toml's customizations, read back by the tree's own tools.
	out := run(t, "chroot", roots["extras-tar"], "/bin/sh", "-c", `. /etc/default/locale; echo "lang=$LANG"; locale -a; `+
		`id builder; firewall-offline-cmd --list-ports; readlink /etc/localtime; cat /etc/systemd/timesyncd.conf.d/*.conf`)
	for _, want := range []string{"lang=de_DE.UTF-8", "de_DE.utf8", "uid=1501(builder)", "1500(builders)", "22/tcp 8080/tcp",
		"/usr/share/zoneinfo/America/New_York", "NTP=0.pool.ntp.org 1.pool.ntp.org"} {
		if !strings.Contains(out, want) {
			t.Errorf("extras-tar: %q not in the output:\n%s", want, out)
		}
	}
	// Big trees: remove them now rather than at the end of the test.
	os.RemoveAll(base)
}

// reproExplain shows why two outputs differ: diffoscope on archives, and
// for disks the partitions and files that differ (diffoscope-minimal cannot
// read file systems), with diffoscope on the first differing files.
func reproExplain(t *testing.T, dir, typ, a, b string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Error(err)
		return
	}
	if !reproDiskTypes[typ] {
		t.Logf("diffoscope %s %s:\n%s", a, b, diffoscope(a, b))
		return
	}
	rawA, errA := reproRawDisk(filepath.Join(dir, "a"), typ, a)
	rawB, errB := reproRawDisk(filepath.Join(dir, "b"), typ, b)
	if err := errors.Join(errA, errB); err != nil {
		t.Errorf("unpacking the disks to explain the difference: %v", err)
		return
	}
	t.Logf("%s: where the disks differ:\n%s", typ, explainDisks(dir, rawA, rawB))
}

// diffoscope runs diffoscope for at most five minutes and returns the head
// of its report.
func diffoscope(a, b string) string {
	if _, err := exec.LookPath("diffoscope"); err != nil {
		return "(diffoscope is not installed: apt-get install diffoscope-minimal)"
	}
	cmd := exec.Command("timeout", "--kill-after=10", "300", "diffoscope", "--no-progress", "--text", "-",
		"--max-report-size", "300000", "--max-diff-block-lines", "40", "--exclude-directory-metadata", "no", a, b)
	out, _ := cmd.CombinedOutput()
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.Contains(l, "W: diffoscope.config:") { // limits lowered on purpose
			lines = append(lines, l)
		}
	}
	if len(lines) > 200 {
		lines = append(lines[:200], fmt.Sprintf("… (%d more lines)", len(lines)-200))
	}
	return strings.Join(lines, "\n")
}

// reproRawDisk returns a raw disk image of an output: the file itself, the
// disk inside an OVA or GCE tarball, or a conversion with qemu-img.
func reproRawDisk(dir, typ, p string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	cmd := func(name string, args ...string) error {
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", name, err, out)
		}
		return nil
	}
	raw := filepath.Join(dir, "disk.raw")
	switch typ {
	case "raw", "ami":
		return p, nil
	case "gce":
		return raw, cmd("tar", "-xzf", p, "-C", dir, "disk.raw")
	case "ova":
		if err := cmd("tar", "-xf", p, "-C", dir, "disk.vmdk"); err != nil {
			return "", err
		}
		p = filepath.Join(dir, "disk.vmdk")
		typ = "vmdk"
	}
	format := map[string]string{"qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vpc"}[typ]
	if err := cmd("qemu-img", "convert", "-f", format, "-O", "raw", p, raw); err != nil {
		return "", err
	}
	return raw, nil
}

// explainDisks names what differs between two raw disks: GPT areas, or
// blocks of partitions; for ext4, the files owning differing data blocks
// (debugfs icheck, ncheck), diffed with diffoscope; for FAT, its listing.
func explainDisks(dir, a, b string) string {
	var report strings.Builder
	if fa, fb := fileSize(a), fileSize(b); fa != fb {
		fmt.Fprintf(&report, "sizes differ: %d and %d bytes\n", fa, fb)
	}
	offsets, err := diffBlocks(a, b, 4096, 64)
	if err != nil {
		return err.Error()
	}
	if len(offsets) == 0 {
		return report.String() + "the raw disks are equal: the difference is in the container format (qemu-img metadata, headers)\n"
	}
	var table struct {
		PartitionTable struct {
			Partitions []struct {
				Node        string `json:"node"`
				Start, Size int64
				Type        string `json:"type"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	out, err := exec.Command("sfdisk", "--json", a).Output()
	if err == nil {
		err = json.Unmarshal(out, &table)
	}
	if err != nil {
		return fmt.Sprintf("sfdisk --json %s: %v", a, err)
	}
	byPart := map[int][]int64{}
	for _, off := range offsets {
		found := false
		for i, p := range table.PartitionTable.Partitions {
			if off >= p.Start*512 && off < (p.Start+p.Size)*512 {
				byPart[i] = append(byPart[i], off-p.Start*512)
				found = true
			}
		}
		if !found {
			fmt.Fprintf(&report, "byte %d: outside the partitions (protective MBR, GPT, boot code)\n", off)
		}
	}
	for i, p := range table.PartitionTable.Partitions {
		offs := byPart[i]
		if len(offs) == 0 {
			continue
		}
		start := p.Start * 512
		fmt.Fprintf(&report, "partition %d (type %s): %d differing 4 KiB blocks among the first %d found, first at byte %d of the partition\n",
			i+1, p.Type, len(offs), len(offsets), offs[0])
		switch strings.ToUpper(p.Type) {
		case "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": // ESP
			la, _ := exec.Command("mdir", "-/", "-a", "-i", fmt.Sprintf("%s@@%d", a, start), "::").CombinedOutput()
			lb, _ := exec.Command("mdir", "-/", "-a", "-i", fmt.Sprintf("%s@@%d", b, start), "::").CombinedOutput()
			fmt.Fprintf(&report, "%s", lineDiff(string(la), string(lb)))
		default:
			report.WriteString(explainExt4(dir, a, b, start, offs))
		}
	}
	return report.String()
}

// explainExt4 maps differing blocks of an ext4 file system to files.
func explainExt4(dir, a, b string, start int64, offs []int64) string {
	var report strings.Builder
	debugfs := func(img, req string) string {
		out, _ := exec.Command("debugfs", "-R", req, fmt.Sprintf("%s?offset=%d", img, start)).Output()
		return string(out)
	}
	bs := int64(4096)
	for _, l := range strings.Split(debugfs(a, "stats"), "\n") {
		if v, ok := strings.CutPrefix(l, "Block size:"); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && n > 0 {
				bs = n
			}
		}
	}
	var blocks []string
	for _, o := range offs {
		// A differing 4 KiB range covers 4096/bs blocks.
		for b := o / bs; b < (o+4096+bs-1)/bs; b++ {
			blocks = append(blocks, strconv.FormatInt(b, 10))
		}
	}
	inodes := map[string]bool{}
	for _, l := range strings.Split(debugfs(a, "icheck "+strings.Join(blocks, " ")), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) == 2 && f[1] != "<block" {
			inodes[f[1]] = true
		} else if len(f) >= 2 {
			fmt.Fprintf(&report, "  block %s: no file's data (inode tables, bitmaps, directories or journal)\n", f[0])
		}
	}
	if len(inodes) == 0 {
		return report.String()
	}
	var list []string
	for ino := range inodes {
		list = append(list, ino)
	}
	sort.Strings(list)
	var files []string
	for _, l := range strings.Split(debugfs(a, "ncheck "+strings.Join(list, " ")), "\n")[1:] {
		if f := strings.Fields(l); len(f) == 2 {
			files = append(files, f[1])
		}
	}
	fmt.Fprintf(&report, "  files with differing data: %s\n", strings.Join(files, " "))
	for i, f := range files {
		if i == 3 {
			break
		}
		fa, fb := filepath.Join(dir, fmt.Sprintf("a-%d-%s", i, filepath.Base(f))), filepath.Join(dir, fmt.Sprintf("b-%d-%s", i, filepath.Base(f)))
		debugfs(a, fmt.Sprintf("dump %s %s", f, fa))
		debugfs(b, fmt.Sprintf("dump %s %s", f, fb))
		fmt.Fprintf(&report, "  diffoscope of %s:\n%s\n", f, diffoscope(fa, fb))
	}
	return report.String()
}

// diffBlocks returns the offsets of up to limit blocks of size bs that
// differ between two files.
func diffBlocks(a, b string, bs, limit int) ([]int64, error) {
	fa, err := os.Open(a)
	if err != nil {
		return nil, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return nil, err
	}
	defer fb.Close()
	const chunk = 4 << 20
	ba, bb := make([]byte, chunk), make([]byte, chunk)
	var out []int64
	for off := int64(0); ; off += chunk {
		na, errA := io.ReadFull(fa, ba)
		nb, errB := io.ReadFull(fb, bb)
		n := min(na, nb)
		if !bytes.Equal(ba[:n], bb[:n]) {
			for i := 0; i < n; i += bs {
				if !bytes.Equal(ba[i:min(i+bs, n)], bb[i:min(i+bs, n)]) {
					out = append(out, off+int64(i))
					if len(out) == limit {
						return out, nil
					}
				}
			}
		}
		if errA != nil || errB != nil {
			return out, nil
		}
	}
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return -1
	}
	return fi.Size()
}

// lineDiff returns the lines only in a ("-") or only in b ("+").
func lineDiff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out strings.Builder
	for _, l := range strings.Split(a, "\n") {
		if !mb[l] {
			out.WriteString("  - " + l + "\n")
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if !ma[l] {
			out.WriteString("  + " + l + "\n")
		}
	}
	return out.String()
}
