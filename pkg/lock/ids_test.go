package lock

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

func TestMergeKernelArgs(t *testing.T) {
	for _, tc := range []struct{ defaults, bp, want string }{
		{"console=tty0 console=ttyS0,115200", "", "console=tty0 console=ttyS0,115200"},
		// The case that made the issue: the blueprint repeats a default.
		{"console=tty0 console=ttyS0,115200", "console=ttyS0,115200", "console=tty0 console=ttyS0,115200"},
		// console= adds an output: another one is kept beside the defaults',
		// and the blueprint's order decides which is /dev/console.
		{"console=tty0 console=ttyS0,115200", "console=ttyS1,9600", "console=tty0 console=ttyS0,115200 console=ttyS1,9600"},
		{"console=tty0 console=ttyS0,115200", "console=ttyS0,115200 console=tty0", "console=ttyS0,115200 console=tty0"},
		// Any other key: the blueprint's value wins.
		{"console=tty0 quiet loglevel=3", "loglevel=7 systemd.show_status=1", "console=tty0 quiet loglevel=7 systemd.show_status=1"},
		{"quiet  quiet", "quiet", "quiet"},
		{"net.ifnames=0 rd.driver-blacklist=a", "rd.driver_blacklist=b", "net.ifnames=0 rd.driver_blacklist=b"},
		// A quoted value with spaces is one argument.
		{`dyndbg="file a.c +p" quiet`, `dyndbg="file b.c +p"`, `quiet dyndbg="file b.c +p"`},
	} {
		if got := mergeKernelArgs(tc.defaults, tc.bp); got != tc.want {
			t.Errorf("mergeKernelArgs(%q, %q) = %q, want %q", tc.defaults, tc.bp, got, tc.want)
		}
	}
}

// lockWith locks the fixture blueprint with edit applied to its text,
// into dir/bp.lock.json, keeping that file's id seed.
func lockWith(t *testing.T, dir string, edit func(string) string, opts ...Option) []byte {
	t.Helper()
	src, err := os.ReadFile("../../testdata/lock/blueprint.toml")
	if err != nil {
		t.Fatal(err)
	}
	bpPath := filepath.Join(dir, "bp.toml")
	if err := os.WriteFile(bpPath, []byte(edit(string(src))), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "bp.lock.json")
	lf, err := lockFixture(t, bpPath, append([]Option{WithPrevious(out)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := lf.Write(out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func same(s string) string { return s }

// gitDiffLines is the number of lines `git diff` marks as removed or added
// between two versions of a file.
func gitDiffLines(t *testing.T, a, b []byte) (int, string) {
	t.Helper()
	dir := t.TempDir()
	pa, pb := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	os.WriteFile(pa, a, 0o644)
	os.WriteFile(pb, b, 0o644)
	out, err := exec.Command("git", "diff", "--no-index", "--no-color", "-U0", pa, pb).Output()
	if err != nil && len(out) == 0 {
		t.Fatalf("git diff: %v", err)
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if (strings.HasPrefix(l, "+") || strings.HasPrefix(l, "-")) && !strings.HasPrefix(l, "+++") && !strings.HasPrefix(l, "---") {
			n++
		}
	}
	return n, string(out)
}

// uuidRE finds the derived identifiers (not the GPT type GUIDs).
var uuidRE = regexp.MustCompile(`"(uuid|root_fs_uuid|boot_fs_uuid|hash_seed|volume_id)": "[0-9a-fA-F-]+"`)

func TestIdentifiersStable(t *testing.T) {
	dir := t.TempDir()
	first := lockWith(t, dir, same)
	ids := uuidRE.FindAll(first, -1)
	if len(ids) < 5 {
		t.Fatalf("the fixture lockfile has %d identifiers, want the disk's, partitions' and file systems'", len(ids))
	}

	// One field of the blueprint: the lockfile's git diff is that field
	// and the two digests, not identifiers.
	renamed := lockWith(t, dir, func(s string) string {
		return strings.Replace(s, `hostname = "fixture"`, `hostname = "fixture2"`, 1)
	})
	n, diff := gitDiffLines(t, first, renamed)
	if n >= 10 || n == 0 {
		t.Errorf("a hostname change makes a %d-line git diff, want 1 to 9:\n%s", n, diff)
	}
	if !strings.Contains(diff, `+                "hostname": "fixture2"`) || uuidRE.MatchString(diff) {
		t.Errorf("git diff of a hostname change:\n%s", diff)
	}
	if d := manifest.Compare(mustParse(t, first), mustParse(t, renamed)); len(d.Entries) != 1 {
		t.Errorf("compare: %d entries changed, want the qcow2 one", len(d.Entries))
	}

	// Renaming the blueprint, adding a package, changing the disk: the
	// ids stay, as the seed is the previous lockfile's.
	other := lockWith(t, dir, func(s string) string {
		return strings.Replace(s, `name = "fixture"`, `name = "renamed"`, 1) + "\n[customizations.disk]\nminsize = \"8 GiB\"\n"
	})
	if got := uuidRE.FindAll(other, -1); !bytes.Equal(bytes.Join(got, nil), bytes.Join(ids, nil)) {
		t.Errorf("identifiers changed with the blueprint's name and disk size:\n%s\n%s", ids, got)
	}

	// --new-ids rotates every one, and the next lock keeps the new ones.
	rotated := lockWith(t, dir, same, WithNewIDs())
	for _, id := range uuidRE.FindAll(rotated, -1) {
		if bytes.Contains(first, id) {
			t.Errorf("identifier %s survived --new-ids", id)
		}
	}
	if d := manifest.Compare(mustParse(t, first), mustParse(t, rotated)); len(d.Notices) != 1 || d.Notices[0].Kind != manifest.NoticeIDs {
		t.Errorf("diff after --new-ids: notices %+v, want the identifiers'", d.Notices)
	}
	again := lockWith(t, dir, same)
	if !bytes.Equal(again, rotated) {
		n, diff := gitDiffLines(t, rotated, again)
		t.Errorf("locking again after --new-ids changed %d lines:\n%s", n, diff)
	}
}

func mustParse(t *testing.T, b []byte) *manifest.Lockfile {
	t.Helper()
	lf, err := manifest.Parse("test", b)
	if err != nil {
		t.Fatal(err)
	}
	return lf
}

func TestPreviousSeed(t *testing.T) {
	dir := t.TempDir()
	const a, b = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	write := func(s string) string {
		p := filepath.Join(dir, "x.lock.json")
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	for _, tc := range []struct{ name, text, want, err string }{
		{"parses", `{"version":1,"id_seed":"` + a + `"}`, a, ""},
		{"none", `{"version":1}`, "", ""},
		{"conflicted, one seed", "<<<<<<< ours\n{\"id_seed\": \"" + a + "\",\n=======\n{\"id_seed\": \"" + a + "\",\n>>>>>>> theirs\n", a, ""},
		{"conflicted, two seeds", "<<<<<<< ours\n\"id_seed\": \"" + a + "\",\n=======\n\"id_seed\": \"" + b + "\",\n>>>>>>> theirs\n", "", "two id seeds"},
		{"bad seed", `{"id_seed":"xyz"}`, "", "id_seed"},
	} {
		got, err := previousSeed(write(tc.text))
		if got != tc.want || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: got %q, %v; want %q, error with %q", tc.name, got, err, tc.want, tc.err)
		}
	}
	if got, err := previousSeed(filepath.Join(dir, "missing.json")); got != "" || err != nil {
		t.Errorf("missing file: %q, %v", got, err)
	}
}
