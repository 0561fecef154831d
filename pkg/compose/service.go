package compose

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/repo"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

// Config says where the service keeps its state and what this process
// works on.
type Config struct {
	// Dir holds the state: the SQLite database, artifacts (unless
	// ArtifactStore), the cache (unless CacheDir) and work areas. One
	// process at a time: Open removes work areas a dead one left.
	Dir string
	// Database is "" for SQLite in Dir, or a postgres:// URL shared by
	// every API node and worker.
	Database string
	// Workers is how many builds this process runs at once per
	// architecture; 0 makes an API node that only queues (and serves).
	Workers int
	// Arches are the architectures whose queues this process works
	// (default: the host's).
	Arches []string
	// ArtifactStore keeps images and logs (default: the store Artifacts
	// names, else Dir/artifacts).
	ArtifactStore ArtifactStore
	// Artifacts names the artifact store when ArtifactStore is nil: a
	// directory, or s3://BUCKET[/PREFIX][?endpoint=URL&region=R] (see
	// OpenArtifactStore).
	Artifacts string
	// CacheDir is pkg/ibuild's cache root (default: Dir/cache).
	CacheDir string
	// Repositories are where locks find package metadata (their
	// CacheDir defaults to CacheDir).
	Repositories ibuild.Repositories
	// DefaultDistro is the distro of a blueprint that names none
	// (default debian-12).
	DefaultDistro string
	// AllowSchemes are the URL schemes a request's repositories may use
	// besides http and https ("file" lets requests read this machine's
	// disk: only for an operator's own use).
	AllowSchemes []string
	// JobTimeout bounds one attempt of a build (default 2h); a job whose
	// worker died is retried RescueAfter after it started (default
	// JobTimeout + 10m). MaxAttempts is per job (default 3).
	JobTimeout, RescueAfter time.Duration
	MaxAttempts             int
	// Logger gets the service's logs, each line with the compose id
	// (default: discarded).
	Logger *slog.Logger
	// Name names this process in image records (default host:pid).
	Name string
	// RegisterBinfmt lets builds of another architecture register
	// qemu-user's binfmt_misc handler (as root).
	RegisterBinfmt bool
	// LockOptions and BuildOptions are passed on to pkg/ibuild (tests
	// pass fixtures).
	LockOptions  []lock.Option
	BuildOptions []build.Option
	// NewTarget makes upload targets (default upload.New; tests inject
	// endpoints).
	NewTarget func(name string, o upload.Options) (upload.Target, error)
	// Publish is where requests may push images, and the signing key.
	Publish PublishConfig
	// PollInterval is how often workers look for jobs (River's
	// FetchPollInterval; default 1s).
	PollInterval time.Duration
	// LiveLogInterval is how often a build's new log lines go to the
	// database, where API nodes on other machines read them (default
	// 2s).
	LiveLogInterval time.Duration
}

// Service runs composes.
type Service struct {
	cfg     Config
	db      *db
	q       queue
	closeDB func()
	store   ArtifactStore
	defs    *distro.Defs
	log     *slog.Logger
	metrics *metrics

	// changed is closed and replaced whenever this process changes a
	// compose, so watchers wake at once (others' changes are polled).
	mu      sync.Mutex
	changed chan struct{}
	closed  bool

	stopSweep context.CancelFunc
	sweepDone chan struct{}

	// appendLog, when set, stands for db.appendLog: tests make an insert
	// that commits report an error, as a timeout does.
	appendLog func(ctx context.Context, id string, idx, seq int, chunk []byte) error
}

const lockQueue = "lock"

// BuildQueue is the queue of an architecture's builds.
func BuildQueue(arch string) string { return "build_" + arch }

// HostArch is the host's architecture as image definitions name it.
func HostArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}

// Open opens (creating when needed) the service's state and starts this
// process's workers.
func Open(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Dir == "" {
		return nil, errors.New("opening compose service: no state directory given")
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("opening compose service: %w", err)
	}
	// Work areas left by a process that died: their jobs are retried
	// in fresh ones. Dir belongs to one process at a time.
	stale, _ := filepath.Glob(filepath.Join(cfg.Dir, "lock-*"))
	more, _ := filepath.Glob(filepath.Join(cfg.Dir, "depsolve-*"))
	for _, d := range append(append(stale, more...), filepath.Join(cfg.Dir, "work")) {
		if err := os.RemoveAll(d); err != nil {
			return nil, fmt.Errorf("removing stale work area: %w", err)
		}
	}
	if len(cfg.Arches) == 0 {
		cfg.Arches = []string{HostArch()}
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(cfg.Dir, "cache")
	}
	if cfg.Repositories.CacheDir == "" {
		cfg.Repositories.CacheDir = cfg.CacheDir
	}
	if cfg.Repositories.Memory == nil {
		// Composes of one distro lock against the same indices: parse
		// each once (bookworm's main, updates and security for one
		// architecture hold ~45 MiB parsed).
		cfg.Repositories.Memory = repo.NewIndexCache(256 << 20)
	}
	if cfg.DefaultDistro == "" {
		cfg.DefaultDistro = "debian-12"
	}
	if cfg.JobTimeout == 0 {
		cfg.JobTimeout = 2 * time.Hour
	}
	if cfg.RescueAfter == 0 {
		cfg.RescueAfter = cfg.JobTimeout + 10*time.Minute
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.Name == "" {
		h, _ := os.Hostname()
		cfg.Name = fmt.Sprintf("%s:%d", h, os.Getpid())
	}
	if cfg.NewTarget == nil {
		cfg.NewTarget = upload.New
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.LiveLogInterval == 0 {
		cfg.LiveLogInterval = 2 * time.Second
	}
	if cfg.Publish.Sign.Mode == ibuild.SignKey {
		// A key that cannot be read fails here, not at each publish.
		_, release, err := ibuild.Signer(ctx, cfg.Publish.Sign)
		if err != nil {
			return nil, fmt.Errorf("opening compose service: the signing key: %w", err)
		}
		release()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	defs, err := distro.Load()
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, store: cfg.ArtifactStore, defs: defs, log: log, changed: make(chan struct{})}
	if s.store == nil && cfg.Artifacts != "" {
		if s.store, err = OpenArtifactStore(ctx, cfg.Artifacts); err != nil {
			return nil, err
		}
	}
	if s.store == nil {
		s.store = DirStore{Dir: filepath.Join(cfg.Dir, "artifacts")}
	}
	s.metrics = newMetrics(s)

	workers := river.NewWorkers()
	river.AddWorker(workers, &lockWorker{s: s})
	river.AddWorker(workers, &buildWorker{s: s})
	rc := &river.Config{
		Workers:              workers,
		JobTimeout:           cfg.JobTimeout,
		RescueStuckJobsAfter: cfg.RescueAfter,
		MaxAttempts:          cfg.MaxAttempts,
		FetchPollInterval:    cfg.PollInterval,
		ID:                   strings.NewReplacer(":", "_", ".", "_").Replace(cfg.Name),
		// River reports job counts every few seconds at info: only its
		// warnings belong in the service's log.
		Logger: slog.New(levelHandler{slog.LevelWarn, log.Handler()}).With("component", "river"),
	}
	if cfg.Workers > 0 {
		rc.Queues = map[string]river.QueueConfig{lockQueue: {MaxWorkers: 2}}
		for _, a := range cfg.Arches {
			rc.Queues[BuildQueue(a)] = river.QueueConfig{MaxWorkers: cfg.Workers}
		}
	}
	database := cfg.Database
	if database == "" {
		database = filepath.Join(cfg.Dir, "compose.db")
	}
	q, sdb, rdb, closeDB, err := openQueue(ctx, database, rc)
	if err != nil {
		return nil, err
	}
	s.q, s.db, s.closeDB = q, &db{sql: sdb, read: rdb, view: newView(sdb == rdb)}, closeDB
	if err := migrate(ctx, sdb); err != nil {
		closeDB()
		return nil, err
	}
	if cfg.Workers > 0 {
		if err := q.start(context.WithoutCancel(ctx)); err != nil {
			closeDB()
			return nil, fmt.Errorf("starting workers: %w", err)
		}
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stopSweep, s.sweepDone = cancel, make(chan struct{})
	go s.sweepLoop(sctx)
	return s, nil
}

// Close stops taking jobs, waits for running ones until ctx ends (then
// cancels them: the queue retries them later, elsewhere or after a
// restart) and closes the database.
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.stopSweep()
	<-s.sweepDone
	var err error
	if s.cfg.Workers > 0 {
		if err = s.q.stop(ctx); err != nil && ctx.Err() != nil {
			// Out of time: cancel the builds still running. Their jobs
			// stay in the queue and are retried, here after a restart
			// or by another worker.
			s.log.Warn("drain timed out: cancelling running builds")
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err = s.q.stopAndCancel(cctx)
			cancel()
		}
	}
	s.closeDB()
	return err
}

// Defs are the image definitions the service builds from.
func (s *Service) Defs() *distro.Defs { return s.defs }

// Config is the service's configuration with defaults filled in.
func (s *Service) Config() Config { return s.cfg }

func (s *Service) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *Service) changedChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// parseBlueprint reads a request's blueprint, TOML or JSON.
func parseBlueprint(data []byte) (*blueprint.Blueprint, string, error) {
	if len(data) > blueprint.MaxSize {
		return nil, "", &RequestError{Field: "blueprint", Msg: fmt.Sprintf("larger than %d bytes", blueprint.MaxSize)}
	}
	name := "blueprint.toml"
	if t := bytes.TrimLeft(data, " \t\r\n\xef\xbb\xbf"); len(t) > 0 && t[0] == '{' {
		name = "blueprint.json"
	}
	bp, err := blueprint.Parse(name, data)
	if err != nil {
		return nil, "", &RequestError{Field: "blueprint", Msg: err.Error()}
	}
	return bp, name, nil
}

func (s *Service) checkURL(field, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return &RequestError{Field: field, Msg: err.Error()}
	}
	if u.Scheme == "http" || u.Scheme == "https" || slices.Contains(s.cfg.AllowSchemes, u.Scheme) {
		return nil
	}
	return &RequestError{Field: field, Msg: fmt.Sprintf("URL scheme %q is not allowed (http and https are)", u.Scheme)}
}

// checkBlueprint refuses what would make lock read the server's own
// disk: repositories and keys by file:// URL, and files whose uri names
// a local path. A request's blueprint comes from a client; only the
// operator may allow other schemes.
func (s *Service) checkBlueprint(bp *blueprint.Blueprint) error {
	if bp.Customizations == nil {
		return nil
	}
	if err := s.checkRepositories("blueprint.customizations.repositories", bp.Customizations.Repositories); err != nil {
		return err
	}
	for i, f := range bp.Customizations.Files {
		if f.URI == "" {
			continue
		}
		field := fmt.Sprintf("blueprint.customizations.files[%d].uri", i)
		u, err := url.Parse(f.URI)
		if err != nil {
			return &RequestError{Field: field, Msg: err.Error()}
		}
		if u.Scheme == "" {
			return &RequestError{Field: field, Msg: "a local path would be read on the server: give the file's data or an http(s) URL"}
		}
		if err := s.checkURL(field, f.URI); err != nil {
			return err
		}
	}
	return nil
}

// checkRepositories refuses repository URLs the operator does not
// allow: a file:// repository would read the server's own disk.
func (s *Service) checkRepositories(prefix string, repos []blueprint.RepositoryCustomization) error {
	for i, r := range repos {
		f := fmt.Sprintf("%s[%d]", prefix, i)
		for j, u := range r.BaseURLs {
			if err := s.checkURL(fmt.Sprintf("%s.baseurls[%d]", f, j), u); err != nil {
				return err
			}
		}
		for _, u := range []string{r.Metalink, r.Mirrorlist} {
			if u != "" {
				if err := s.checkURL(f, u); err != nil {
					return err
				}
			}
		}
		for j, k := range r.GPGKeys {
			if strings.Contains(k, "-----BEGIN PGP PUBLIC KEY BLOCK-----") {
				continue
			}
			if err := s.checkURL(fmt.Sprintf("%s.gpgkeys[%d]", f, j), k); err != nil {
				return err
			}
		}
	}
	return nil
}

// prepare checks a request and returns the blueprint to lock (its bytes
// and file name) with the request's repositories and size applied.
func (s *Service) prepare(req *Request) (*blueprint.Blueprint, []byte, string, string, error) {
	bp, name, err := parseBlueprint(req.Blueprint)
	if err != nil {
		return nil, nil, "", "", err
	}
	distroName := req.Distro
	if distroName == "" {
		distroName = bp.Distro
	}
	if distroName == "" {
		distroName = s.cfg.DefaultDistro
	}
	d, err := s.defs.Distro(distroName)
	if err != nil {
		return nil, nil, "", "", &RequestError{Field: "distro", Msg: fmt.Sprintf("unknown distro %q (known: %s)", distroName, strings.Join(s.defs.DistroNames(), ", "))}
	}
	if len(req.Images) == 0 {
		return nil, nil, "", "", &RequestError{Field: "images", Msg: "no image requested"}
	}
	var size uint64
	// A tag names one image: two images of one compose tagged alike
	// would each be pushed on their own and the tag would end on
	// whichever finished last, while both records claimed it.
	tagged := map[string]int{}
	for i, im := range req.Images {
		if _, err := d.Arch(im.Arch); err != nil {
			return nil, nil, "", "", &RequestError{Field: fmt.Sprintf("images[%d].arch", i), Msg: fmt.Sprintf("unknown architecture %q for %s (known: %s)", im.Arch, distroName, strings.Join(d.ArchNames(), ", "))}
		}
		if _, err := s.defs.Type(im.Type); err != nil {
			return nil, nil, "", "", &RequestError{Field: fmt.Sprintf("images[%d].type", i), Msg: fmt.Sprintf("unknown image type %q (known: %s)", im.Type, strings.Join(s.defs.TypeNames(), ", "))}
		}
		if im.Upload != nil {
			if _, err := s.cfg.NewTarget(im.Upload.Target, im.Upload.Options); err != nil {
				return nil, nil, "", "", &RequestError{Field: fmt.Sprintf("images[%d].upload", i), Msg: err.Error()}
			}
		}
		if im.Publish != nil {
			if err := s.checkPublish(fmt.Sprintf("images[%d].publish", i), im.Publish); err != nil {
				return nil, nil, "", "", err
			}
			if tag, ok := publishTag(im.Publish.Ref); ok {
				if j, ok := tagged[tag]; ok {
					return nil, nil, "", "", &RequestError{Field: fmt.Sprintf("images[%d].publish.ref", i),
						Msg: fmt.Sprintf("images[%d] is published to the same tag %s: a tag names one image (give each its own tag, or the repository without a tag)", j, tag)}
				}
				tagged[tag] = i
			}
		}
		size = max(size, im.Size)
	}
	if err := s.checkBlueprint(bp); err != nil {
		return nil, nil, "", "", err
	}
	if err := s.checkRepositories("repositories", req.Repositories); err != nil {
		return nil, nil, "", "", err
	}
	data := req.Blueprint
	if len(req.Repositories) > 0 || size > 0 {
		// The lockfile records the blueprint it came from, so what the
		// request adds goes into a blueprint of its own, as JSON.
		if bp.Customizations == nil {
			bp.Customizations = &blueprint.Customizations{}
		}
		for _, r := range req.Repositories {
			r.InstallFrom = true
			bp.Customizations.Repositories = append(bp.Customizations.Repositories, r)
		}
		if size > 0 {
			switch c := bp.Customizations; {
			case c.Disk != nil:
				c.Disk.MinSize = max(c.Disk.MinSize, size)
			case len(c.Filesystem) == 0:
				c.Disk = &blueprint.DiskCustomization{MinSize: size}
			default:
				return nil, nil, "", "", &RequestError{Field: "images.size", Msg: "the blueprint sets customizations.filesystem; set the size there"}
			}
		}
		if err := bp.Validate(); err != nil {
			return nil, nil, "", "", &RequestError{Field: "repositories", Msg: err.Error()}
		}
		if data, err = marshalBlueprint(bp); err != nil {
			return nil, nil, "", "", err
		}
		name = "blueprint.json"
		if _, err := blueprint.Parse(name, data); err != nil {
			return nil, nil, "", "", &RequestError{Field: "repositories", Msg: err.Error()}
		}
	}
	return bp, data, name, distroName, nil
}

// Submit checks the request and queues its compose. A bad request is a
// *RequestError and queues nothing.
func (s *Service) Submit(ctx context.Context, owner string, req Request) (*Compose, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	bp, data, name, distroName, err := s.prepare(&req)
	if err != nil {
		return nil, err
	}
	id := uuid.NewString()
	now := time.Now().UTC()
	row := &composeRow{Request: req, BlueprintName: bp.Name, BlueprintVersion: bp.Version, BlueprintFile: name, Distro: distroName}
	images := make([]ImageStatus, len(req.Images))
	for i, im := range req.Images {
		images[i] = ImageStatus{Arch: im.Arch, Type: im.Type, Status: StatusPending}
	}
	if err := s.db.insertCompose(ctx, id, owner, now, row, data, images); err != nil {
		return nil, err
	}
	job, err := s.q.insert(ctx, lockArgs{Compose: id}, &river.InsertOpts{Queue: lockQueue})
	if err != nil {
		_ = s.db.deleteCompose(context.WithoutCancel(ctx), id)
		return nil, fmt.Errorf("queueing compose %s: %w", id, err)
	}
	row.LockJobID = job
	if err := s.db.updateCompose(ctx, id, StatusPending, row); err != nil {
		return nil, err
	}
	s.metrics.submitted.Inc()
	s.log.InfoContext(ctx, "compose queued", "compose", id, "owner", owner, "blueprint", bp.Name, "images", len(images))
	s.notify()
	return s.Get(ctx, owner, id)
}

func (s *Service) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Service) owned(ctx context.Context, owner, id string) (*loaded, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, ErrNotFound
	}
	l, err := s.db.cached(ctx, id)
	if err != nil {
		return nil, err
	}
	if l.owner != owner {
		return nil, ErrNotFound
	}
	return l, nil
}

// derive is a compose's status from its record and images.
func derive(l *loaded) Status {
	if l.row.Failed {
		return StatusFailure
	}
	if l.row.LockfileDigest == "" {
		if l.row.Cancelled {
			return StatusFailure
		}
		return StatusPending
	}
	all, failed, uploading := true, false, false
	for _, im := range l.images {
		switch im.Status {
		case StatusFailure:
			failed = true
		case StatusSuccess:
		case StatusUploading:
			uploading, all = true, false
		default:
			all = false
		}
	}
	switch {
	case all && failed:
		return StatusFailure
	case all:
		return StatusSuccess
	case uploading:
		return StatusUploading
	}
	return StatusBuilding
}

func (l *loaded) compose() *Compose {
	c := &Compose{
		ID: l.id, Owner: l.owner, Request: l.row.Request, BlueprintName: l.row.BlueprintName,
		BlueprintVersion: l.row.BlueprintVersion, Distro: l.row.Distro, Status: derive(l),
		Created: l.created, Started: l.row.Started, Images: l.images,
		LockfileDigest: l.row.LockfileDigest, Error: l.row.Error, Cancelled: l.row.Cancelled,
	}
	if c.Status.Final() {
		f := l.row.LockedAt
		for _, im := range l.images {
			if im.Finished != nil && (f == nil || im.Finished.After(*f)) {
				f = im.Finished
			}
		}
		c.Finished = f
		if c.Error == "" {
			for _, im := range l.images {
				if im.Error != "" {
					c.Error = im.Error
					break
				}
			}
		}
	}
	return c
}

// Get returns a compose of owner.
func (s *Service) Get(ctx context.Context, owner, id string) (*Compose, error) {
	l, err := s.owned(ctx, owner, id)
	if err != nil {
		return nil, err
	}
	return l.compose(), nil
}

// List returns owner's composes, newest first, and how many match in all.
func (s *Service) List(ctx context.Context, owner string, o ListOptions) ([]*Compose, int, error) {
	total, err := s.db.count(ctx, owner, o.Statuses)
	if err != nil {
		return nil, 0, err
	}
	ids, err := s.db.ids(ctx, owner, o.Statuses, o.Limit, o.Offset)
	if err != nil {
		return nil, 0, err
	}
	out := make([]*Compose, 0, len(ids))
	for _, id := range ids {
		l, err := s.db.cached(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, 0, err
		}
		out = append(out, l.compose())
	}
	return out, total, nil
}

// refresh writes a compose's derived status to its row (what List
// filters on) and records metrics when it turns final.
func (s *Service) refresh(ctx context.Context, id string) {
	l, err := s.db.load(ctx, id)
	if err != nil {
		return
	}
	st := derive(l)
	if st != l.status {
		if err := s.db.setStatus(ctx, id, st); err != nil {
			s.log.ErrorContext(ctx, "updating compose status", "compose", id, "err", err)
		}
		if st.Final() {
			c := l.compose()
			s.metrics.finished(c)
			s.log.InfoContext(ctx, "compose finished", "compose", id, "status", st, "error", c.Error)
		}
	}
	s.notify()
}

// Cancel stops a compose: queued jobs are cancelled, running builds stop
// and free their work areas; the compose ends as a failure.
func (s *Service) Cancel(ctx context.Context, owner, id string) error {
	l, err := s.owned(ctx, owner, id)
	if err != nil {
		return err
	}
	if derive(l).Final() {
		return ErrFinished
	}
	l.row.Cancelled = true
	if l.row.Error == "" {
		l.row.Error = "cancelled"
	}
	if err := s.db.updateCompose(ctx, id, l.status, &l.row); err != nil {
		return err
	}
	now := time.Now().UTC()
	for i := range l.images {
		im := &l.images[i]
		if im.Status.Final() {
			continue
		}
		im.Status, im.Error, im.Finished = StatusFailure, "cancelled", &now
		if err := s.db.updateImage(ctx, id, i, im); err != nil {
			return err
		}
	}
	for _, j := range append([]int64{l.row.LockJobID}, l.jobIDs...) {
		if j != 0 {
			// A finished job cannot be cancelled; that is no error here.
			_ = s.q.cancel(ctx, j)
		}
	}
	s.log.InfoContext(ctx, "compose cancelled", "compose", id)
	s.refresh(ctx, id)
	return nil
}

// Delete removes a finished compose and its artifacts.
func (s *Service) Delete(ctx context.Context, owner, id string) error {
	l, err := s.owned(ctx, owner, id)
	if err != nil {
		return err
	}
	if !derive(l).Final() {
		return ErrNotFinished
	}
	if err := s.store.DeletePrefix(ctx, id); err != nil {
		return err
	}
	if err := s.db.deleteCompose(ctx, id); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "compose deleted", "compose", id)
	s.notify()
	return nil
}

// Lockfile returns the compose's lockfile (its manifest);
// ErrNotFinished before the lock is done.
func (s *Service) Lockfile(ctx context.Context, owner, id string) ([]byte, error) {
	if _, err := s.owned(ctx, owner, id); err != nil {
		return nil, err
	}
	_, lf, err := s.db.blueprintAndLockfile(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(lf) == 0 {
		return nil, ErrNotFinished
	}
	return lf, nil
}

// Blueprint returns the blueprint the compose locked (with the request's
// repositories and size applied) and its file name (.toml or .json).
func (s *Service) Blueprint(ctx context.Context, owner, id string) ([]byte, string, error) {
	l, err := s.owned(ctx, owner, id)
	if err != nil {
		return nil, "", err
	}
	bp, _, err := s.db.blueprintAndLockfile(ctx, id)
	return bp, l.row.BlueprintFile, err
}

func imageIndex(l *loaded, image int) error {
	if image < 0 || image >= len(l.images) {
		return fmt.Errorf("compose %s has no image %d: %w", l.id, image, ErrNotFound)
	}
	return nil
}

func artifactKey(id string, image int, name string) string {
	return fmt.Sprintf("%s/%d/%s", id, image, name)
}

// Log opens the build log of one image of a compose: the stored log once
// the build ended; while it builds, the log file when this process builds
// it, else the chunks its worker appended to the database. While a retry
// builds, that is its own log, not the stored one of the attempt before.
func (s *Service) Log(ctx context.Context, owner, id string, image int) (io.ReadCloser, error) {
	l, err := s.owned(ctx, owner, id)
	if err != nil {
		return nil, err
	}
	if err := imageIndex(l, image); err != nil {
		return nil, err
	}
	building := l.images[image].Status == StatusBuilding
	err = fs.ErrNotExist
	if !building {
		var r io.ReadCloser
		if r, _, err = s.store.Open(ctx, artifactKey(id, image, "build.log")); err == nil {
			return r, nil
		}
	}
	if f, ferr := os.Open(filepath.Join(s.workDir(id, image), "build.log")); ferr == nil {
		return f, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	// Not built yet, or built by another process that is still at it:
	// what its worker appended so far.
	live, lerr := s.db.liveLog(ctx, id, image)
	if lerr != nil {
		return nil, lerr
	}
	if len(live) == 0 && !building {
		// The build may have ended between the two reads.
		if r, _, err := s.store.Open(ctx, artifactKey(id, image, "build.log")); err == nil {
			return r, nil
		}
	}
	return io.NopCloser(bytes.NewReader(live)), nil
}

// Artifact opens the image file of one image of a finished compose.
func (s *Service) Artifact(ctx context.Context, owner, id string, image int) (io.ReadSeekCloser, *Artifact, error) {
	l, err := s.owned(ctx, owner, id)
	if err != nil {
		return nil, nil, err
	}
	if err := imageIndex(l, image); err != nil {
		return nil, nil, err
	}
	im := l.images[image]
	if im.Status != StatusSuccess || im.Artifact == nil {
		return nil, nil, ErrNotFinished
	}
	r, _, err := s.store.Open(ctx, artifactKey(id, image, im.Artifact.Name))
	if err != nil {
		return nil, nil, err
	}
	a := *im.Artifact
	return r, &a, nil
}

// Watch sends the compose whenever it changes, first as it is now, until
// it is final (then the channel closes) or ctx ends.
func (s *Service) Watch(ctx context.Context, owner, id string) (<-chan *Compose, error) {
	c, err := s.Get(ctx, owner, id)
	if err != nil {
		return nil, err
	}
	ch := make(chan *Compose, 1)
	ch <- c
	go func() {
		defer close(ch)
		last := c
		for !last.Status.Final() {
			select {
			case <-ctx.Done():
				return
			case <-s.changedChan():
			case <-time.After(time.Second):
			}
			c, err := s.Get(ctx, owner, id)
			if err != nil {
				return
			}
			if !sameCompose(last, c) {
				select {
				case ch <- c:
				case <-ctx.Done():
					return
				}
				last = c
			}
		}
	}()
	return ch, nil
}

func sameCompose(a, b *Compose) bool {
	if a.Status != b.Status || len(a.Images) != len(b.Images) {
		return false
	}
	for i := range a.Images {
		x, y := a.Images[i], b.Images[i]
		if x.Status != y.Status || x.Progress != y.Progress || x.Attempt != y.Attempt {
			return false
		}
	}
	return true
}

func (s *Service) workDir(id string, image int) string {
	return filepath.Join(s.cfg.Dir, "work", fmt.Sprintf("%s-%d", id, image))
}

// levelHandler drops records below its level.
type levelHandler struct {
	level slog.Level
	slog.Handler
}

func (h levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h levelHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return levelHandler{h.level, h.Handler.WithAttrs(a)}
}

func (h levelHandler) WithGroup(g string) slog.Handler {
	return levelHandler{h.level, h.Handler.WithGroup(g)}
}

// Depsolve locks the blueprint for one architecture (its root file
// system only, the tar image type) and returns the packages its
// operating system tree installs, for composer's depsolve and freeze.
func (s *Service) Depsolve(ctx context.Context, bpData []byte, distroName, arch string) ([]manifest.Package, error) {
	bp, name, err := parseBlueprint(bpData)
	if err != nil {
		return nil, err
	}
	if err := s.checkBlueprint(bp); err != nil {
		return nil, err
	}
	if distroName == "" {
		distroName = bp.Distro
	}
	if distroName == "" {
		distroName = s.cfg.DefaultDistro
	}
	if arch == "" {
		arch = HostArch()
	}
	dir, err := os.MkdirTemp(s.cfg.Dir, "depsolve-")
	if err != nil {
		return nil, fmt.Errorf("depsolving: %w", err)
	}
	defer os.RemoveAll(dir)
	bpPath := filepath.Join(dir, name)
	if err := os.WriteFile(bpPath, bpData, 0o644); err != nil {
		return nil, fmt.Errorf("depsolving: %w", err)
	}
	res, err := ibuild.Lock(ctx, ibuild.LockRequest{
		Blueprint: bpPath, Lockfile: ibuild.DefaultLockPath(bpPath), Distro: distroName,
		Arches: []string{arch}, Types: []string{"tar"}, Repositories: s.cfg.Repositories, Options: s.cfg.LockOptions,
	})
	if err != nil {
		return nil, err
	}
	e, err := res.Lockfile.Entry(arch, "tar")
	if err != nil {
		return nil, err
	}
	idx := res.Lockfile.PackageIndex()
	var out []manifest.Package
	for _, p := range e.Pipelines {
		if p.Name != manifest.PipelineOS {
			continue
		}
		for _, ref := range p.PackageRefs() {
			if pk, ok := idx[ref]; ok {
				out = append(out, *pk)
			}
		}
	}
	return out, nil
}

// Packages returns the packages of the compose's images' operating
// system trees, from its lockfile (nil before the lock).
func (s *Service) Packages(ctx context.Context, owner, id string) ([]manifest.Package, error) {
	l, err := s.owned(ctx, owner, id)
	if err != nil {
		return nil, err
	}
	_, data, err := s.db.blueprintAndLockfile(ctx, id)
	if err != nil || len(data) == 0 {
		return nil, err
	}
	lf, err := manifest.Parse("lockfile", data)
	if err != nil {
		return nil, err
	}
	idx := lf.PackageIndex()
	seen := map[string]bool{}
	var out []manifest.Package
	for _, im := range l.images {
		e, err := lf.Entry(im.Arch, im.Type)
		if err != nil {
			continue
		}
		for _, p := range e.Pipelines {
			if p.Name != manifest.PipelineOS {
				continue
			}
			for _, ref := range p.PackageRefs() {
				if pk, ok := idx[ref]; ok && !seen[ref] {
					seen[ref] = true
					out = append(out, *pk)
				}
			}
		}
	}
	return out, nil
}
