package ibuild

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/lock/locktest"
)

const fixtureDir = "../../testdata/lock"

// workspace is a directory holding the fixture blueprint (edited) as
// blueprint.toml and, when lockfile is not nil, that lockfile beside it.
func workspace(t *testing.T, edit func(string) string, lockfile []byte) (bp, lf string) {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(fixtureDir, "blueprint.toml"))
	if err != nil {
		t.Fatal(err)
	}
	body := string(src)
	if edit != nil {
		body = edit(body)
	}
	bp, lf = filepath.Join(dir, "blueprint.toml"), filepath.Join(dir, "blueprint.lock.json")
	if err := os.WriteFile(bp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if lockfile != nil {
		if err := os.WriteFile(lf, lockfile, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return bp, lf
}

func golden(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, "blueprint.lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hostnameEdit(s string) string {
	return strings.Replace(s, `hostname = "fixture"`, `hostname = "renamed"`, 1)
}

func TestLock(t *testing.T) {
	gold := golden(t)
	for _, tc := range []struct {
		name string
		edit func(string) string
		old  []byte // the lockfile there before; nil: none
		// what the result says
		existed, changed, diff, prevErr bool
		wantErr                         string
	}{
		{name: "new", changed: true},
		{name: "unchanged", old: gold, existed: true},
		{name: "blueprint changed", edit: hostnameEdit, old: gold, existed: true, changed: true, diff: true},
		{name: "old file unreadable", old: []byte("{not json"), existed: true, changed: true, prevErr: true},
		{name: "blueprint refused", edit: func(s string) string {
			return strings.Replace(s, `hostname = "fixture"`, `hostnme = "fixture"`, 1)
		}, old: gold, wantErr: `unknown field "hostnme"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bp, lf := workspace(t, tc.edit, tc.old)
			var mtime time.Time
			if tc.old != nil {
				// Back-date the old file: rewriting it would show.
				mtime = time.Now().Add(-time.Hour).Truncate(time.Second)
				if err := os.Chtimes(lf, mtime, mtime); err != nil {
					t.Fatal(err)
				}
			}
			res, err := Lock(context.Background(), LockRequest{Blueprint: bp, Arches: []string{"x86_64"}, Types: []string{"qcow2", "container"},
				Options: locktest.FixtureOptions(t, fixtureDir)})
			after, rerr := os.ReadFile(lf)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				if len(blueprint.Errors(err)) == 0 {
					t.Errorf("error %v carries no blueprint location", err)
				}
				if !bytes.Equal(after, tc.old) {
					t.Error("a failed lock changed the lockfile")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rerr != nil {
				t.Fatal(rerr)
			}
			if res.Path != lf {
				t.Errorf("path %s, want the default %s", res.Path, lf)
			}
			if res.Existed != tc.existed || res.Changed != tc.changed || (res.Diff != nil) != tc.diff || (res.PreviousErr != nil) != tc.prevErr {
				t.Errorf("existed %v changed %v diff %v previous error %v, want %v %v %v %v",
					res.Existed, res.Changed, res.Diff != nil, res.PreviousErr, tc.existed, tc.changed, tc.diff, tc.prevErr)
			}
			want, err := res.Lockfile.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(after, want) {
				t.Error("the file on disk is not the result's lockfile")
			}
			if tc.edit == nil && !bytes.Equal(after, gold) {
				t.Error("locking the fixture blueprint did not reproduce testdata/lock/blueprint.lock.json")
			}
			fi, err := os.Stat(lf)
			if err != nil {
				t.Fatal(err)
			}
			if rewritten := !fi.ModTime().Equal(mtime); tc.old != nil && rewritten != tc.changed {
				t.Errorf("file rewritten: %v, want %v", rewritten, tc.changed)
			}
			if tc.diff && !strings.Contains(res.Diff.Text(), "renamed") {
				t.Errorf("diff does not show the new hostname:\n%s", res.Diff.Text())
			}
		})
	}
}

func TestCheck(t *testing.T) {
	gold := golden(t)
	edited := bytes.Replace(gold, []byte(`"tool": "ibuild test"`), []byte(`"tool": "ibuild edited"`), 1)
	for _, tc := range []struct {
		name  string
		edit  func(string) string
		lock  []byte
		stale string // a reason's text, when stale
		check func(error) bool
	}{
		{name: "up to date", lock: gold},
		{name: "blueprint changed", edit: hostnameEdit, lock: gold, stale: "the blueprint"},
		{name: "missing", check: func(err error) bool { return errors.Is(err, fs.ErrNotExist) }},
		{name: "edited by hand", lock: edited, check: func(err error) bool {
			var ee *EditedError
			return errors.As(err, &ee) && ee.Lockfile == "NAME" && strings.Contains(err.Error(), "content_sha256")
		}},
		{name: "not a lockfile", lock: []byte("[]"), check: func(err error) bool { return err != nil && strings.Contains(err.Error(), "reading lockfile") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bp, _ := workspace(t, tc.edit, tc.lock)
			res, err := Check(context.Background(), CheckRequest{Blueprint: bp, Name: "NAME", Options: locktest.FixtureOptions(t, fixtureDir)})
			if tc.check != nil {
				if !tc.check(err) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (res.Stale != nil) != (tc.stale != "") {
				t.Fatalf("stale %v, want %v", res.Stale, tc.stale != "")
			}
			if tc.stale == "" {
				return
			}
			if res.Stale.Lockfile != "NAME" || !strings.Contains(strings.Join(res.Stale.Reasons, "; "), tc.stale) {
				t.Errorf("stale error %v", res.Stale)
			}
			if res.Stale.Diff == nil || !strings.Contains(res.Stale.Diff.Text(), "renamed") {
				t.Errorf("stale without the diff locking again makes: %+v", res.Stale)
			}
		})
	}
}
