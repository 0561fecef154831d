package compose

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/riverqueue/river"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

func marshalBlueprint(bp *blueprint.Blueprint) ([]byte, error) {
	data, err := json.MarshalIndent(bp, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("writing blueprint: %w", err)
	}
	return append(data, '\n'), nil
}

// lockArgs is the job that locks a compose's blueprint and queues its
// builds.
type lockArgs struct {
	Compose string `json:"compose"`
}

func (lockArgs) Kind() string { return "ibuild_compose_lock" }

// buildArgs is the job that builds (and uploads) one image of a compose.
type buildArgs struct {
	Compose string `json:"compose"`
	Index   int    `json:"index"`
}

func (buildArgs) Kind() string { return "ibuild_compose_build" }

var errCancelled = errors.New("cancelled")

// watchCancel returns a context cancelled (with errCancelled) when the
// compose is cancelled or deleted, which another process may do: the
// database is polled.
func (s *Service) watchCancel(ctx context.Context, id string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			l, err := s.db.load(ctx, id)
			if errors.Is(err, ErrNotFound) || (err == nil && l.row.Cancelled) {
				cancel(errCancelled)
				return
			}
		}
	}()
	return ctx, func() { close(done); wg.Wait(); cancel(nil) }
}

type lockWorker struct {
	river.WorkerDefaults[lockArgs]
	s *Service
}

func (w *lockWorker) Work(ctx context.Context, job *river.Job[lockArgs]) error {
	s, id := w.s, job.Args.Compose
	log := s.log.With("compose", id, "job", job.ID, "attempt", job.Attempt)
	l, err := s.db.load(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil // deleted while queued
	}
	if err != nil {
		return err
	}
	if l.row.Cancelled {
		return river.JobCancel(errCancelled)
	}
	if l.row.LockfileDigest == "" {
		if err := w.lock(ctx, log, l); err != nil {
			return err
		}
	}
	// Queue the builds; unique by their arguments, so a retry after a
	// crash between lock and here queues none twice.
	for i, im := range l.row.Request.Images {
		if l.jobIDs[i] != 0 {
			continue
		}
		j, err := s.q.insert(ctx, buildArgs{Compose: id, Index: i}, &river.InsertOpts{
			Queue: BuildQueue(im.Arch), UniqueOpts: river.UniqueOpts{ByArgs: true},
		})
		if err != nil {
			return fmt.Errorf("queueing build %d of compose %s: %w", i, id, err)
		}
		if err := s.db.setImageJob(ctx, id, i, j); err != nil {
			return err
		}
	}
	log.InfoContext(ctx, "builds queued", "images", len(l.row.Request.Images))
	s.refresh(ctx, id)
	return nil
}

func (w *lockWorker) lock(ctx context.Context, log interface {
	InfoContext(context.Context, string, ...any)
	WarnContext(context.Context, string, ...any)
}, l *loaded) error {
	s, id := w.s, l.id
	now := time.Now().UTC()
	l.row.Started = &now
	if err := s.db.updateCompose(ctx, id, StatusPending, &l.row); err != nil {
		return err
	}
	s.notify()
	ctx, stop := s.watchCancel(ctx, id)
	defer stop()
	bp, _, err := s.db.blueprintAndLockfile(ctx, id)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(filepath.Join(s.cfg.Dir), "lock-")
	if err != nil {
		return fmt.Errorf("locking compose %s: %w", id, err)
	}
	defer os.RemoveAll(dir)
	bpPath := filepath.Join(dir, l.row.BlueprintFile)
	if err := os.WriteFile(bpPath, bp, 0o644); err != nil {
		return fmt.Errorf("locking compose %s: %w", id, err)
	}
	var arches, types []string
	for _, im := range l.row.Request.Images {
		if !slices.Contains(arches, im.Arch) {
			arches = append(arches, im.Arch)
		}
		if !slices.Contains(types, im.Type) {
			types = append(types, im.Type)
		}
	}
	log.InfoContext(ctx, "locking", "distro", l.row.Distro, "arches", arches, "types", types)
	start := time.Now()
	res, err := ibuild.Lock(ctx, ibuild.LockRequest{
		Blueprint: bpPath, Lockfile: ibuild.DefaultLockPath(bpPath), Distro: l.row.Distro,
		Arches: arches, Types: types, Repositories: s.cfg.Repositories, Options: s.cfg.LockOptions,
	})
	s.metrics.stage.WithLabelValues("lock").Observe(time.Since(start).Seconds())
	if err != nil {
		if errors.Is(context.Cause(ctx), errCancelled) {
			return river.JobCancel(errCancelled)
		}
		if ctx.Err() != nil {
			return err // shutting down: the queue retries
		}
		// What the blueprint asks for cannot be locked: retrying
		// would fail the same way.
		log.WarnContext(ctx, "lock failed", "err", err)
		t := time.Now().UTC()
		l.row.Failed, l.row.Error, l.row.LockedAt = true, err.Error(), &t
		// The row keeps its old status: refresh sees the change and
		// records it.
		if uerr := s.db.updateCompose(context.WithoutCancel(ctx), id, l.status, &l.row); uerr != nil {
			return uerr
		}
		s.metrics.failures.WithLabelValues("lock").Inc()
		for i := range l.images {
			im := &l.images[i]
			im.Status, im.Error, im.Finished = StatusFailure, "locking: "+err.Error(), &t
			if uerr := s.db.updateImage(context.WithoutCancel(ctx), id, i, im); uerr != nil {
				return uerr
			}
		}
		s.refresh(context.WithoutCancel(ctx), id)
		return river.JobCancel(err)
	}
	for _, w := range res.Warnings {
		log.WarnContext(ctx, "lock warning", "msg", w)
	}
	data, err := manifest.ReadFile(res.Path)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	t := time.Now().UTC()
	l.row.LockfileDigest, l.row.LockedAt = hex.EncodeToString(sum[:]), &t
	if err := s.db.setLockfile(ctx, id, &l.row, data); err != nil {
		return err
	}
	log.InfoContext(ctx, "locked", "lockfile_sha256", l.row.LockfileDigest, "seconds", time.Since(start).Seconds())
	return nil
}

type buildWorker struct {
	river.WorkerDefaults[buildArgs]
	s *Service
}

func (w *buildWorker) Work(ctx context.Context, job *river.Job[buildArgs]) error {
	s, id, idx := w.s, job.Args.Compose, job.Args.Index
	log := s.log.With("compose", id, "image", idx, "job", job.ID, "attempt", job.Attempt)
	l, err := s.db.load(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.row.Cancelled {
		return river.JobCancel(errCancelled)
	}
	if idx < 0 || idx >= len(l.images) {
		return river.JobCancel(fmt.Errorf("compose %s has no image %d", id, idx))
	}
	im := l.images[idx]
	if im.Status == StatusSuccess {
		return nil
	}
	req := l.row.Request.Images[idx]
	now := time.Now().UTC()
	im.Status, im.Started, im.Finished, im.Error = StatusBuilding, &now, nil, ""
	im.Attempt, im.Worker, im.Progress = job.Attempt, s.cfg.Name, Progress{}
	if err := s.db.updateImage(ctx, id, idx, &im); err != nil {
		return err
	}
	s.refresh(ctx, id)
	log.InfoContext(ctx, "build started", "arch", req.Arch, "type", req.Type, "worker", s.cfg.Name)

	ctx, stop := s.watchCancel(ctx, id)
	defer stop()
	err = w.build(ctx, log, l, idx, &im)
	bg := context.WithoutCancel(ctx)
	switch {
	case err == nil:
		t := time.Now().UTC()
		im.Status, im.Finished = StatusSuccess, &t
		if err := s.db.updateImage(bg, id, idx, &im); err != nil {
			return err
		}
		log.InfoContext(ctx, "build finished", "artifact", im.Artifact.Name, "size", im.Artifact.Size)
		s.refresh(bg, id)
		return nil
	case errors.Is(context.Cause(ctx), errCancelled):
		log.InfoContext(bg, "build cancelled")
		return river.JobCancel(errCancelled)
	case ctx.Err() != nil && job.Attempt < job.MaxAttempts:
		// Shutting down or timed out: the queue tries again.
		log.WarnContext(bg, "build interrupted", "err", err)
		return err
	}
	log.WarnContext(bg, "build failed", "err", err)
	im.Error = err.Error()
	if job.Attempt < job.MaxAttempts {
		// Kept building: the queue retries it.
		if uerr := s.db.updateImage(bg, id, idx, &im); uerr != nil {
			return uerr
		}
		s.refresh(bg, id)
		return err
	}
	t := time.Now().UTC()
	im.Status, im.Finished = StatusFailure, &t
	if uerr := s.db.updateImage(bg, id, idx, &im); uerr != nil {
		return uerr
	}
	s.metrics.failures.WithLabelValues("build").Inc()
	s.refresh(bg, id)
	return err
}

// build runs one image's build and upload in a fresh work area, removed
// at the end whatever happens; the log goes to the store either way.
func (w *buildWorker) build(ctx context.Context, log interface {
	InfoContext(context.Context, string, ...any)
}, l *loaded, idx int, im *ImageStatus) (err error) {
	s, id := w.s, l.id
	req := l.row.Request.Images[idx]
	dir := s.workDir(id, idx)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("cleaning work area: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("making work area: %w", err)
	}
	defer os.RemoveAll(dir)
	bp, lf, err := s.db.blueprintAndLockfile(ctx, id)
	if err != nil {
		return err
	}
	bpPath := filepath.Join(dir, l.row.BlueprintFile)
	lockPath := ibuild.DefaultLockPath(bpPath)
	if err := os.WriteFile(bpPath, bp, 0o644); err != nil {
		return fmt.Errorf("writing blueprint: %w", err)
	}
	if err := os.WriteFile(lockPath, lf, 0o644); err != nil {
		return fmt.Errorf("writing lockfile: %w", err)
	}
	logf, err := os.Create(filepath.Join(dir, "build.log"))
	if err != nil {
		return err
	}
	stopShip := s.shipLog(ctx, id, idx, logf.Name())
	defer func() {
		logf.Close()
		stopShip()
		bg := context.WithoutCancel(ctx)
		if f, oerr := os.Open(logf.Name()); oerr == nil {
			if s.store.Put(bg, artifactKey(id, idx, "build.log"), f) == nil {
				_ = s.db.deleteLog(bg, id, idx)
			}
			f.Close()
		}
	}()
	fmt.Fprintf(logf, "compose %s image %d (%s/%s), attempt %d on %s\n", id, idx, req.Arch, req.Type, im.Attempt, s.cfg.Name)

	if parsed, perr := manifest.Parse(lockPath, lf); perr == nil {
		if e, eerr := parsed.Entry(req.Arch, req.Type); eerr == nil {
			for _, p := range e.Pipelines {
				if p.Host == "" {
					im.Progress.Total += len(p.Stages)
				}
			}
		}
	}
	var (
		mu       sync.Mutex
		lastSave time.Time
	)
	events := func(ev ibuild.BuildEvent) {
		if st, ok := ev.Event.(build.StageStart); ok && !st.CacheHit {
			// Saved at once: a stage that runs is slow enough to be worth
			// naming, unlike cached ones, which come in bursts.
			mu.Lock()
			defer mu.Unlock()
			im.Progress.Stage = st.Pipeline + ": " + st.Type
			lastSave = time.Now()
			_ = s.db.updateImage(ctx, id, idx, im)
			s.notify()
			return
		}
		d, ok := ev.Event.(build.StageDone)
		if !ok {
			return
		}
		if !d.CacheHit {
			s.metrics.buildStage.WithLabelValues(d.Type).Observe(d.Duration.Seconds())
		}
		mu.Lock()
		defer mu.Unlock()
		im.Progress.Done = min(im.Progress.Done+1, max(im.Progress.Total, im.Progress.Done+1))
		im.Progress.Total = max(im.Progress.Total, im.Progress.Done)
		fmt.Fprintf(logf, "stage %s/%d %s done (cached %v) in %s\n", d.Pipeline, d.Index, d.Type, d.CacheHit, d.Duration.Round(time.Millisecond))
		if time.Since(lastSave) > 500*time.Millisecond {
			lastSave = time.Now()
			_ = s.db.updateImage(ctx, id, idx, im)
			s.notify()
		}
	}
	start := time.Now()
	out := filepath.Join(dir, "out")
	res, err := ibuild.Build(ctx, ibuild.BuildRequest{
		Lockfile: lockPath, Arches: []string{req.Arch}, Types: []string{req.Type}, One: true,
		OutputDir: out, CacheDir: s.cfg.CacheDir, Events: events, Log: logf,
		RegisterBinfmt: s.cfg.RegisterBinfmt, Options: s.cfg.BuildOptions,
	})
	s.metrics.stage.WithLabelValues("build").Observe(time.Since(start).Seconds())
	if err != nil {
		fmt.Fprintf(logf, "build failed: %v\n", err)
		return err
	}
	mu.Lock()
	im.Progress.Done, im.Progress.Stage = im.Progress.Total, ""
	mu.Unlock()
	img := res.Images[0]
	im.Files = nil
	for _, f := range img.Files {
		a := Artifact{Name: filepath.ToSlash(f.Name), Size: f.Size, SHA256: f.SHA256}
		im.Files = append(im.Files, a)
		if filepath.Base(f.Name) == img.Entry.Filename || (im.Artifact == nil && len(img.Files) == 1) {
			im.Artifact = &a
		}
	}
	if im.Artifact == nil {
		// The image is the largest file the build wrote.
		for i := range im.Files {
			if im.Artifact == nil || im.Files[i].Size > im.Artifact.Size {
				im.Artifact = &im.Files[i]
			}
		}
	}
	if im.Artifact == nil {
		return errors.New("the build wrote no file")
	}
	for _, f := range img.Files {
		r, err := os.Open(f.Path)
		if err != nil {
			return err
		}
		err = s.store.Put(ctx, artifactKey(id, idx, filepath.ToSlash(f.Name)), r)
		r.Close()
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(logf, "built %s (%d bytes, sha256 %s) in %s\n", im.Artifact.Name, im.Artifact.Size, im.Artifact.SHA256, time.Since(start).Round(time.Millisecond))
	if req.Publish != nil {
		if err := w.publish(ctx, log, l, lockPath, out, idx, im, logf); err != nil {
			return err
		}
	}
	if req.Upload == nil {
		return nil
	}
	im.Status = StatusUploading
	if err := s.db.updateImage(ctx, id, idx, im); err != nil {
		return err
	}
	s.refresh(ctx, id)
	log.InfoContext(ctx, "uploading", "target", req.Upload.Target)
	start = time.Now()
	ures, err := ibuild.Upload(ctx, ibuild.UploadRequest{
		Lockfile: lockPath, From: out, Arches: []string{req.Arch}, Types: []string{req.Type},
		Target: req.Upload.Target, Options: req.Upload.Options, NewTarget: s.cfg.NewTarget,
	})
	s.metrics.stage.WithLabelValues("upload").Observe(time.Since(start).Seconds())
	if err != nil {
		s.metrics.uploads.WithLabelValues(req.Upload.Target, "failure").Inc()
		fmt.Fprintf(logf, "upload to %s failed: %v\n", req.Upload.Target, err)
		return fmt.Errorf("uploading to %s: %w", req.Upload.Target, err)
	}
	s.metrics.uploads.WithLabelValues(req.Upload.Target, "success").Inc()
	if len(ures.Uploads) > 0 {
		u := ures.Uploads[0]
		im.Upload = &u
		fmt.Fprintf(logf, "uploaded to %s: %s%s\n", u.Target, u.ID, u.URL)
	}
	return nil
}

// publish pushes the built image to the request's repository; the
// "uploading" status covers it (composer has no word of its own).
func (w *buildWorker) publish(ctx context.Context, log interface {
	InfoContext(context.Context, string, ...any)
}, l *loaded, lockPath, out string, idx int, im *ImageStatus, logf io.Writer) error {
	s, id := w.s, l.id
	req := l.row.Request.Images[idx]
	im.Status = StatusUploading
	if err := s.db.updateImage(ctx, id, idx, im); err != nil {
		return err
	}
	s.refresh(ctx, id)
	log.InfoContext(ctx, "publishing", "ref", req.Publish.Ref, "sign", req.Publish.Sign)
	start := time.Now()
	p, err := s.publishImage(ctx, lockPath, out, req)
	s.metrics.stage.WithLabelValues("publish").Observe(time.Since(start).Seconds())
	if err != nil {
		fmt.Fprintf(logf, "publishing to %s failed: %v\n", req.Publish.Ref, err)
		return fmt.Errorf("publishing to %s: %w", req.Publish.Ref, err)
	}
	im.Published = p
	fmt.Fprintf(logf, "published %s (signed %v) in %s\n", p.Ref, p.Signed, time.Since(start).Round(time.Millisecond))
	return nil
}

// sweepLoop ends composes whose jobs the queue gave up on (a worker that
// died on the last attempt, a job cancelled or discarded): no compose
// stays running forever.
func (s *Service) sweepLoop(ctx context.Context) {
	defer close(s.sweepDone)
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.sweep(ctx)
	}
}

func (s *Service) sweep(ctx context.Context) {
	ids, err := s.db.ids(ctx, "", []Status{StatusPending, StatusBuilding, StatusUploading}, 0, 0)
	if err != nil {
		return
	}
	gone := func(state string) bool { return state == "" || state == "discarded" || state == "cancelled" }
	for _, id := range ids {
		l, err := s.db.load(ctx, id)
		if err != nil {
			continue
		}
		if l.row.LockfileDigest == "" && !l.row.Failed && l.row.LockJobID != 0 {
			if st, err := s.db.jobState(ctx, l.row.LockJobID); err == nil && gone(st) {
				t := time.Now().UTC()
				l.row.Failed, l.row.LockedAt = true, &t
				if l.row.Error == "" {
					l.row.Error = "lock job " + orGone(st)
				}
				_ = s.db.updateCompose(ctx, id, StatusFailure, &l.row)
				s.log.WarnContext(ctx, "compose failed: its lock job ended", "compose", id, "state", orGone(st))
			}
		}
		for i, im := range l.images {
			if im.Status.Final() || l.jobIDs[i] == 0 {
				continue
			}
			st, err := s.db.jobState(ctx, l.jobIDs[i])
			if err != nil || !gone(st) {
				continue
			}
			t := time.Now().UTC()
			im.Status, im.Finished = StatusFailure, &t
			if im.Error == "" {
				im.Error = "build job " + orGone(st)
			}
			_ = s.db.updateImage(ctx, id, i, &im)
			s.log.WarnContext(ctx, "image failed: its build job ended", "compose", id, "image", i, "state", orGone(st))
		}
		s.refresh(ctx, id)
	}
}

func orGone(state string) string {
	if state == "" {
		return "gone"
	}
	return state
}

// maxLogLine bounds the text shipLog holds back waiting for a newline: a
// tool drawing a progress bar with '\r' may write none for a long time.
const maxLogLine = 64 << 10

// shipLog appends the lines the build writes to path to the database
// every Config.LiveLogInterval, until the returned stop is called, so an API
// node that does not share this machine shows the log while the build
// runs. Whole lines while the build runs (a chunk then never splits a
// character; appendLog makes any text valid UTF-8), unless a line grows
// past maxLogLine; stop ships what is left, newline or not, so the live
// log is whole even when the store does not get the log file.
func (s *Service) shipLog(ctx context.Context, id string, idx int, path string) (stop func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	finish := make(chan struct{})
	done := make(chan struct{})
	if err := s.db.deleteLog(ctx, id, idx); err != nil {
		s.log.WarnContext(ctx, "live log", "compose", id, "image", idx, "err", err)
	}
	go func() {
		defer close(done)
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		appendLog := s.db.appendLog
		if s.appendLog != nil {
			appendLog = s.appendLog
		}
		var (
			pending []byte
			buf     = make([]byte, 64<<10)
			seq     int
			// unsure is the length of pending[:unsure] sent as seq by an
			// insert that reported an error: it may have committed (a
			// timeout), and a row whose seq is there is not added again,
			// so exactly those bytes go again under that seq before
			// anything more. A larger chunk under that seq would lose
			// the lines added meanwhile.
			unsure int
		)
		send := func(ctx context.Context, end int) bool {
			if err := appendLog(ctx, id, idx, seq, pending[:end]); err != nil {
				if ctx.Err() == nil {
					s.log.WarnContext(ctx, "live log", "compose", id, "image", idx, "err", err)
				}
				unsure = end
				return false
			}
			unsure = 0
			seq++
			pending = append(pending[:0], pending[end:]...)
			return true
		}
		ship := func(ctx context.Context, last bool) {
			for {
				n, _ := f.Read(buf)
				if n == 0 {
					break
				}
				pending = append(pending, buf[:n]...)
			}
			if unsure > 0 && !send(ctx, unsure) {
				return
			}
			end := bytes.LastIndexByte(pending, '\n') + 1
			if last {
				end = len(pending)
			} else if len(pending)-end > maxLogLine {
				// A long line goes in parts, cut between characters.
				end = len(pending)
				for k := end - 1; k >= 0 && k >= end-utf8.UTFMax; k-- {
					if utf8.RuneStart(pending[k]) {
						if !utf8.FullRune(pending[k:end]) {
							end = k
						}
						break
					}
				}
			}
			if end == 0 {
				return
			}
			send(ctx, end)
		}
		t := time.NewTicker(s.cfg.LiveLogInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-finish:
				fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
				ship(fctx, true)
				fcancel()
				return
			case <-t.C:
				ship(ctx, false)
			}
		}
	}()
	return func() {
		close(finish)
		<-done
		cancel()
	}
}
