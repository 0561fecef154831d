package build

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/binfmt"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/sources"
	"github.com/image-builder-action/image-builder-action/stages"
)

// Option configures Build.
type Option func(*options) error

type options struct {
	outputDir    string
	cacheDir     string
	events       func(Event)
	concurrency  int
	cacheMaxSize int64
	log          io.Writer
	client       *http.Client
	snapshotURL  *string
	stores       []sources.Source
	workDir      string
	// freshTrees ignores the stage trees in the cache (WithFreshTrees).
	freshTrees bool
	// rerun names pipelines whose stages run though cached (WithRerun).
	rerun map[string]bool
	// commitAfter is the stage duration from which an intermediate tree of
	// many files is committed (debs and last stages always are; 0: every
	// stage's tree).
	commitAfter time.Duration
	// buildArch picks the build root among a lockfile's stand-ins
	// (WithBuildArch).
	buildArch string
}

// WithBuildArch builds as a host of architecture arch would (default: this
// machine's): an entry of another architecture uses the build root locked
// for arch when the lockfile has one, else its own. WithBuildArch(the
// entry's architecture) runs every tool as the target, as a native build
// does, which shows whether the cross build gives the same bytes.
func WithBuildArch(arch string) Option {
	return func(o *options) error { o.buildArch = arch; return nil }
}

// WithOutputDir sets where the image files go (default: the current
// directory). It is created if missing.
func WithOutputDir(dir string) Option {
	return func(o *options) error { o.outputDir = dir; return nil }
}

// WithCacheDir sets the cache directory (default: $XDG_CACHE_HOME/ibuild or
// ~/.cache/ibuild).
func WithCacheDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return errors.New("empty cache directory")
		}
		o.cacheDir = dir
		return nil
	}
}

// WithEvents receives progress events (Download, StageStart, StageDone,
// Commit). It is called from several goroutines during downloads.
func WithEvents(f func(Event)) Option {
	return func(o *options) error { o.events = f; return nil }
}

// WithConcurrency bounds parallel downloads (default 8).
func WithConcurrency(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("concurrency %d: must be at least 1", n)
		}
		o.concurrency = n
		return nil
	}
}

// WithCacheMaxSize evicts least recently used cache entries after the
// build until the cache holds at most bytes (0: no limit).
func WithCacheMaxSize(bytes int64) Option {
	return func(o *options) error {
		if bytes < 0 {
			return fmt.Errorf("cache size %d: must not be negative", bytes)
		}
		o.cacheMaxSize = bytes
		return nil
	}
}

// WithWorkDir sets where trees are built (default: /dev/shm when it is a
// tmpfs with 8 GiB free, else the cache's temp directory). Stages create
// many small files, so a tmpfs is much faster; each build works in its own
// subdirectory, removed at the end, or by the next build if it was killed.
func WithWorkDir(dir string) Option {
	return func(o *options) error { o.workDir = dir; return nil }
}

// WithFreshTrees runs every stage again: the stage trees in the cache are
// neither used nor added to (the build's trees live in a private store
// removed at the end); packages still come from the cache, checked against
// their digests. Verify uses it so a rebuild proves something.
func WithFreshTrees() Option {
	return func(o *options) error { o.freshTrees = true; return nil }
}

// WithRerun runs every stage of the named pipelines again, their inputs
// and build roots still coming from the cache: a second build of an image
// pipeline shows that the disk assembly alone repeats its bytes, without
// rebuilding the trees it reads (WithFreshTrees rebuilds everything).
func WithRerun(pipelines ...string) Option {
	return func(o *options) error {
		if o.rerun == nil {
			o.rerun = map[string]bool{}
		}
		for _, p := range pipelines {
			o.rerun[p] = true
		}
		return nil
	}
}

// WithLog receives the output of the tools the stages run (default:
// discarded).
func WithLog(w io.Writer) Option {
	return func(o *options) error { o.log = w; return nil }
}

// WithHTTPClient sets the client packages are downloaded with.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) error { o.client = c; return nil }
}

// WithSnapshotURL sets the snapshot archive a build asks for a package its
// mirror URL no longer serves (default sources.DefaultSnapshotURL, Debian's;
// "" asks none).
func WithSnapshotURL(u string) Option {
	return func(o *options) error { o.snapshotURL = &u; return nil }
}

// WithStores adds content-addressed stores (sources.OpenStore) a build asks,
// in order, for a package neither the mirror nor the snapshot archive
// serves. Every file is checked against the lockfile's sha256 whichever
// source served it, so the sources change nothing in what is built.
func WithStores(stores ...sources.Source) Option {
	return func(o *options) error { o.stores = append(o.stores, stores...); return nil }
}

// Chain is where a build with these options takes packages from, in order:
// the lockfile's mirror URLs, the snapshot archive at the time the
// lockfile's repositories were read, then the stores.
func chain(lf *manifest.Lockfile, o *options) []sources.Source {
	c := []sources.Source{sources.Mirror(o.client)}
	snap := sources.DefaultSnapshotURL
	if o.snapshotURL != nil {
		snap = *o.snapshotURL
	}
	if snap != "" {
		c = append(c, sources.Snapshot(snap, lf.Repositories, o.client))
	}
	return append(c, o.stores...)
}

// Result is what a build produced.
type Result struct {
	// Entry is the entry's name, "arch/type".
	Entry string
	// Files are the output files, in the output directory.
	Files []OutputFile
	// Sources are the packages (and bytes) each source served this build;
	// those found in the cache are not counted.
	Sources []SourceCount
}

// OutputFile is one file a build wrote.
type OutputFile struct {
	// Name is the file's path relative to the output directory.
	Name string
	// Path is the file's full path.
	Path   string
	Size   int64
	SHA256 string
}

// plan is one stage, decoded, with its cache key.
type stagePlan struct {
	typ      string
	stage    stages.Stage
	key      string
	inputs   []string // pipelines the options reference
	packages []string // refs
}

type pipelinePlan struct {
	p *manifest.Pipeline
	// build is the build root's pipeline: p.Build, or what stands in for
	// it on this host.
	build string
	// native is the stand-in build root of this host's architecture whose
	// programs a foreign tree's stages may run in place of the tree's own
	// where the result is the same (stages.Env.Native). It is not part
	// of the keys: it changes how fast a tree is made, not what it holds.
	native string
	// arch is the dpkg architecture of the pipeline's tree; execArch the
	// architecture (image definitions' name) of the programs its stages
	// run: its own tree's, or its build root's.
	arch, execArch string
	stages         []*stagePlan
	cached         int // leading stages whose trees are in the store
	rerun          bool
	needed         bool
	// final marks the last pipeline, whose files are the outputs: its
	// tree is built in the store's temp area and moved into the store.
	final bool

	done chan struct{} // closed when the pipeline has run (or failed)
	err  error         // why it failed, read after done

	mu   sync.Mutex // guards tree: pipelines using it extract it once
	tree string     // the finished tree in the work area, once there
}

func (pp *pipelinePlan) key() string { return pp.stages[len(pp.stages)-1].key }

// Build builds the lockfile's entry for arch and typ (empty matches the only
// entry) and writes its files to the output directory.
func Build(ctx context.Context, lf *manifest.Lockfile, arch, typ string, opts ...Option) (*Result, error) {
	o := options{concurrency: 8, log: io.Discard, events: func(Event) {}, commitAfter: 10 * time.Second, buildArch: binfmt.HostArch()}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("build options: %w", err)
		}
	}
	// Pipelines run concurrently and their tools all write to the log.
	o.log = &syncWriter{w: o.log}
	if o.cacheDir == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("finding a cache directory: %w (use WithCacheDir)", err)
		}
		o.cacheDir = filepath.Join(d, "ibuild")
	}
	if o.outputDir == "" {
		o.outputDir = "."
	}
	entry, err := lf.Entry(arch, typ)
	if err != nil {
		return nil, err
	}
	if len(entry.Pipelines) == 0 {
		return nil, fmt.Errorf("entry %s has no pipelines", entry.Name())
	}
	if err := lf.Validate(); err != nil {
		return nil, fmt.Errorf("lockfile: %w", err)
	}
	plans, err := planEntry(lf, entry, o.buildArch)
	if err != nil {
		return nil, err
	}
	defer pinUmask()()

	cache, err := OpenStore(o.cacheDir)
	if err != nil {
		return nil, err
	}
	defer cache.Close()
	store := cache
	if o.freshTrees {
		// In the cache's private temp area: removed by Close, or by the
		// next build if this one is killed.
		dir, err := cache.TempDir("fresh-")
		if err != nil {
			return nil, fmt.Errorf("making a private store: %w", err)
		}
		if store, err = OpenStore(dir); err != nil {
			return nil, err
		}
		defer store.Close()
	}
	work, err := openWorkArea(store, o.workDir)
	if err != nil {
		return nil, err
	}
	defer work.Close()

	for _, pp := range plans {
		pp.rerun = o.rerun[pp.p.Name]
	}
	markNeeded(store, plans, len(plans)-1)
	plans[len(plans)-1].final = true
	// Before any work: another architecture's programs must be able to run.
	for _, pp := range plans {
		if pp.needed && pp.cached < len(pp.stages) {
			if err := binfmt.Check(pp.execArch); err != nil {
				return nil, fmt.Errorf("entry %s pipeline %s: %w", entry.Name(), pp.p.Name, err)
			}
		}
	}

	src := NewSources(cache.SourcesDir(), lf.Packages, o.client, o.concurrency, o.events, chain(lf, &o)...)
	var refs []string
	for _, pp := range plans {
		if !pp.needed {
			continue
		}
		for _, sp := range pp.stages[pp.cached:] {
			refs = append(refs, sp.packages...)
		}
	}
	if err := src.Fetch(ctx, refs); err != nil {
		return nil, err
	}

	b := &builder{ctx: ctx, store: store, work: work, src: src, lf: lf, entry: entry, o: &o, byName: map[string]*pipelinePlan{}}
	for _, pp := range plans {
		b.byName[pp.p.Name] = pp
	}
	b.shared, b.flights = sharedStages(plans), map[string]*flight{}
	// Background commits read the work area: wait for them on every path.
	defer b.wait()
	if err := b.runAll(ctx, plans); err != nil {
		return nil, err
	}

	last := plans[len(plans)-1]
	outTree := last.tree
	if outTree == "" {
		// Cached: read the files in place when stored as a directory.
		var ok bool
		if outTree, ok = store.DirTree(last.key()); !ok {
			if outTree, err = b.treeOf(ctx, last); err != nil {
				return nil, err
			}
		}
	}
	res := &Result{Entry: entry.Name(), Sources: src.Counts()}
	res.Files, err = exportFiles(outTree, o.outputDir)
	if err != nil {
		return nil, err
	}
	if err := b.wait(); err != nil {
		return nil, err
	}
	work.Close()
	store.Close() // release the tmp area before evicting
	cache.Close()
	if o.cacheMaxSize > 0 {
		st, err := OpenStore(o.cacheDir)
		if err != nil {
			return res, err
		}
		_, err = st.Evict(o.cacheMaxSize)
		if cerr := st.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// umask pins the process umask to 022 while builds run: stages create
// files with os.WriteFile and os.MkdirAll, and the caller's umask (077,
// 027…) must not change the modes in the image.
var umask struct {
	sync.Mutex
	users int
	saved int
}

// pinUmask sets the umask to 022 until the returned function is called by
// every build that pinned it.
func pinUmask() (release func()) {
	umask.Lock()
	defer umask.Unlock()
	if umask.users == 0 {
		umask.saved = syscall.Umask(0o022)
	}
	umask.users++
	return func() {
		umask.Lock()
		defer umask.Unlock()
		umask.users--
		if umask.users == 0 {
			syscall.Umask(umask.saved)
		}
	}
}

// Plan checks that Build could start on the lockfile's entry for arch and
// typ: the lockfile is valid and every stage decodes, validates and has a
// key (its packages and pipelines known), without downloading or running
// anything. Lock's tests run what lock writes through it.
func Plan(lf *manifest.Lockfile, arch, typ string) error {
	entry, err := lf.Entry(arch, typ)
	if err != nil {
		return err
	}
	if len(entry.Pipelines) == 0 {
		return fmt.Errorf("entry %s has no pipelines", entry.Name())
	}
	if err := lf.Validate(); err != nil {
		return fmt.Errorf("lockfile: %w", err)
	}
	_, err = planEntry(lf, entry, binfmt.HostArch())
	return err
}

// planEntry decodes and validates every stage and computes the keys, before
// anything runs.
func planEntry(lf *manifest.Lockfile, entry *manifest.Entry, buildArch string) ([]*pipelinePlan, error) {
	index := lf.PackageIndex()
	finalKey := map[string]string{}
	// Stand-ins for this host take the place of the pipelines they
	// replace; those for other hosts are left out.
	alias := map[string]string{}
	resolve := func(name string) string {
		if a, ok := alias[name]; ok {
			return a
		}
		return name
	}
	byName := map[string]*pipelinePlan{}
	var plans []*pipelinePlan
	standIn := "" // the first stand-in for this host
	for i := range entry.Pipelines {
		p := &entry.Pipelines[i]
		if p.Host != "" {
			if p.Host != buildArch || p.Host == entry.Arch {
				continue
			}
			alias[p.Replaces] = p.Name
			if standIn == "" {
				standIn = p.Name
			}
		}
		arch := cmp.Or(p.Host, entry.Arch)
		pp := &pipelinePlan{p: p, build: resolve(p.Build), arch: dpkgArch(arch), execArch: arch}
		if p.Build == "" && arch != buildArch {
			pp.native = standIn
		}
		if len(p.Stages) == 0 {
			return nil, fmt.Errorf("entry %s pipeline %s: no stages", entry.Name(), p.Name)
		}
		buildKey := ""
		if pp.build != "" {
			k, ok := finalKey[pp.build]
			if !ok {
				return nil, fmt.Errorf("entry %s pipeline %s: build pipeline %q is not defined before it", entry.Name(), p.Name, p.Build)
			}
			buildKey = k
			pp.execArch = byName[pp.build].execArch
		}
		prev := ""
		for j := range p.Stages {
			ms := &p.Stages[j]
			where := fmt.Sprintf("entry %s pipeline %s stage %d (%s)", entry.Name(), p.Name, j, ms.Type)
			st, err := stages.New(ms.Type, ms.Options)
			if err != nil {
				return nil, stages.At(err, entry.Name(), p.Name, j, ms.Type)
			}
			canon, r, err := canonicalOptions(ms.Options)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			digests, err := packageDigests(index, r.packages)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			for i, name := range r.pipelines {
				r.pipelines[i] = resolve(name)
			}
			inputs := map[string]string{}
			for _, name := range r.pipelines {
				k, ok := finalKey[name]
				if !ok {
					return nil, fmt.Errorf("%s: references pipeline %q, which is not defined before it", where, name)
				}
				inputs[name] = k
			}
			key, err := stageKey(keyInput{
				Arch: arch, SourceDateEpoch: lf.SourceDateEpoch, Type: ms.Type, StageVersion: stages.Version(ms.Type), Options: canon,
				Previous: prev, BuildRoot: buildKey, Inputs: inputs, Packages: digests,
			})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			pp.stages = append(pp.stages, &stagePlan{typ: ms.Type, stage: st, key: key, inputs: r.pipelines, packages: r.packages})
			prev = key
		}
		finalKey[p.Name] = prev
		byName[p.Name] = pp
		plans = append(plans, pp)
	}
	return plans, nil
}

// sharedStages returns the keys of the stages to run that more than one
// needed pipeline has.
func sharedStages(plans []*pipelinePlan) map[string]bool {
	count := map[string]int{}
	for _, pp := range plans {
		if !pp.needed {
			continue
		}
		for _, sp := range pp.stages[pp.cached:] {
			count[sp.key]++
		}
	}
	shared := map[string]bool{}
	for k, n := range count {
		if n > 1 {
			shared[k] = true
		}
	}
	return shared
}

// markNeeded decides which pipelines must run for plans[i]'s tree: none
// when its tree is cached, else its build root and the inputs of the
// stages that must run.
func markNeeded(store *Store, plans []*pipelinePlan, i int) {
	pp := plans[i]
	if pp.needed {
		return
	}
	pp.needed = true
	for k := len(pp.stages); k > 0 && !pp.rerun; k-- {
		if store.Lookup(pp.stages[k-1].key) {
			pp.cached = k
			break
		}
	}
	if pp.cached == len(pp.stages) {
		return
	}
	deps := map[string]bool{}
	if pp.build != "" {
		deps[pp.build] = true
	}
	if pp.native != "" {
		deps[pp.native] = true
	}
	for _, sp := range pp.stages[pp.cached:] {
		for _, in := range sp.inputs {
			deps[in] = true
		}
	}
	for j := 0; j < i; j++ {
		if deps[plans[j].p.Name] {
			markNeeded(store, plans, j)
		}
	}
}

// builder runs the pipelines of one build.
type builder struct {
	// ctx is the build's: commits end with it (a signal), not when another
	// pipeline fails, so what finished stays cached.
	ctx    context.Context
	store  *Store
	work   *workArea
	src    *Sources
	lf     *manifest.Lockfile
	entry  *manifest.Entry
	o      *options
	byName map[string]*pipelinePlan // pipelines done so far

	// Commits of finished pipelines run in the background: nothing
	// changes those trees any more.
	commits   sync.WaitGroup
	commitMu  sync.Mutex
	commitErr error

	// shared are the keys of stages that more than one pipeline runs.
	shared    map[string]bool
	flightsMu sync.Mutex
	flights   map[string]*flight
}

// commit stores tree as key; in the background when async.
func (b *builder) commit(pp *pipelinePlan, i int, tree string, async bool) error {
	sp := pp.stages[i]
	do := func() error {
		start := time.Now()
		if err := b.store.Commit(b.ctx, sp.key, tree, objectMeta{Pipeline: pp.p.Name, Stage: i, Type: sp.typ}); err != nil {
			return stages.At(err, "", pp.p.Name, i, sp.typ)
		}
		b.o.events(Commit{Pipeline: pp.p.Name, Index: i, Key: sp.key, Duration: time.Since(start)})
		return nil
	}
	if !async {
		return do()
	}
	b.commits.Add(1)
	go func() {
		defer b.commits.Done()
		if err := do(); err != nil {
			b.commitMu.Lock()
			if b.commitErr == nil {
				b.commitErr = err
			}
			b.commitMu.Unlock()
		}
	}()
	return nil
}

// wait waits for the background commits.
func (b *builder) wait() error {
	b.commits.Wait()
	b.commitMu.Lock()
	defer b.commitMu.Unlock()
	return b.commitErr
}

// deps returns the pipelines pp waits for: its build root and the inputs
// of the stages that must run.
func (pp *pipelinePlan) deps() []string {
	var names []string
	if pp.build != "" {
		names = append(names, pp.build)
	}
	if pp.native != "" {
		names = append(names, pp.native)
	}
	for _, sp := range pp.stages[pp.cached:] {
		names = append(names, sp.inputs...)
	}
	return names
}

// runAll runs the needed pipelines, each as soon as the pipelines it
// depends on are done: the os tree, which runs its own tools, is built
// while the build root is. The first failure cancels the others and is
// the error returned.
func (b *builder) runAll(ctx context.Context, plans []*pipelinePlan) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		// A pipeline stopped while waiting says less than one stopped
		// in a stage: which stage was running when a signal came.
		waitErr error
	)
	fail := func(pp *pipelinePlan, err error, waiting bool) {
		pp.err = err
		mu.Lock()
		if waiting && waitErr == nil {
			waitErr = err
		} else if !waiting && firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel(err)
	}
	for _, pp := range plans {
		pp.done = make(chan struct{})
	}
	for _, pp := range plans {
		if !pp.needed {
			close(pp.done)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(pp.done)
			for _, name := range pp.deps() {
				dep := b.byName[name]
				select {
				case <-dep.done:
				case <-ctx.Done():
					fail(pp, fmt.Errorf("pipeline %s: %w", pp.p.Name, context.Cause(ctx)), true)
					return
				}
				if dep.err != nil {
					fail(pp, fmt.Errorf("pipeline %s: pipeline %s failed", pp.p.Name, name), true)
					return
				}
			}
			if err := b.runPipeline(ctx, pp); err != nil {
				var w waiting
				fail(pp, err, errors.As(err, &w))
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		return waitErr
	}
	return firstErr
}

// treeOf returns a finished pipeline's tree in the work area, extracting
// it from the store when it was cached.
func (b *builder) treeOf(ctx context.Context, pp *pipelinePlan) (string, error) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.tree != "" {
		return pp.tree, nil
	}
	dst := filepath.Join(b.work.dir, "done-"+pp.p.Name)
	if err := b.store.Materialize(ctx, pp.key(), dst); err != nil {
		return "", fmt.Errorf("pipeline %s: %w", pp.p.Name, err)
	}
	pp.tree = dst
	return dst, nil
}

func (b *builder) runPipeline(ctx context.Context, pp *pipelinePlan) error {
	name := pp.p.Name
	o := b.o
	for i := 0; i < pp.cached; i++ {
		o.events(StageStart{Pipeline: name, Index: i, Type: pp.stages[i].typ, CacheHit: true})
		o.events(StageDone{Pipeline: name, Index: i, Type: pp.stages[i].typ, CacheHit: true})
	}
	if pp.cached == len(pp.stages) {
		return nil
	}
	buildRoot, native := "", ""
	if pp.build != "" {
		var err error
		if buildRoot, err = b.treeOf(ctx, b.byName[pp.build]); err != nil {
			return err
		}
	}
	if pp.native != "" {
		var err error
		if native, err = b.treeOf(ctx, b.byName[pp.native]); err != nil {
			return err
		}
	}
	tree := filepath.Join(b.work.dir, "tree-"+name)
	if pp.final {
		// Committed by a rename, and copied once: to the outputs.
		dir, err := b.store.TempDir("final-")
		if err != nil {
			return fmt.Errorf("pipeline %s: %w", name, err)
		}
		tree = filepath.Join(dir, "tree")
	}
	if pp.cached > 0 {
		if err := b.store.Materialize(ctx, pp.stages[pp.cached-1].key, tree); err != nil {
			return fmt.Errorf("pipeline %s: %w", name, err)
		}
	} else if err := os.Mkdir(tree, 0o755); err != nil {
		return fmt.Errorf("pipeline %s: %w", name, err)
	}
	for i := pp.cached; i < len(pp.stages); i++ {
		var err error
		f, leader := b.join(pp.stages[i].key, pp.p.Name)
		if f != nil && !leader {
			err = b.follow(ctx, pp, i, f, tree)
		} else {
			tree, err = b.step(ctx, pp, i, tree, buildRoot, native, f != nil)
			if f != nil {
				f.finish(err)
			}
		}
		if err != nil {
			return err
		}
	}
	pp.mu.Lock()
	pp.tree = tree
	pp.mu.Unlock()
	return nil
}

// step runs stage i of pp in tree and commits the tree when it is worth
// keeping (mustCommit: other pipelines wait for it). It returns where the
// tree is afterwards: the final tree moves into the store.
func (b *builder) step(ctx context.Context, pp *pipelinePlan, i int, tree, buildRoot, native string, mustCommit bool) (string, error) {
	name, sp, o := pp.p.Name, pp.stages[i], b.o
	inputs := map[string]string{}
	protected := []string{}
	for _, t := range []string{buildRoot, native} {
		if t != "" {
			protected = append(protected, t)
		}
	}
	for _, in := range sp.inputs {
		t, err := b.treeOf(ctx, b.byName[in])
		if err != nil {
			return tree, err
		}
		inputs[in] = t
		protected = append(protected, t)
	}
	env := &stages.Env{
		Tree:            tree,
		Inputs:          inputs,
		BuildRoot:       buildRoot,
		Native:          native,
		Packages:        b.src,
		Runner:          b.runner(protected),
		Arch:            pp.arch,
		SourceDateEpoch: b.lf.SourceDateEpoch,
		Log:             o.log,
		TempDir:         b.work.tmp,
	}
	o.events(StageStart{Pipeline: name, Index: i, Type: sp.typ})
	start := time.Now()
	if err := sp.stage.Run(ctx, env); err != nil {
		if ctx.Err() != nil {
			return tree, stages.At(context.Cause(ctx), "", name, i, sp.typ)
		}
		return tree, stages.At(err, "", name, i, sp.typ)
	}
	d := time.Since(start)
	o.events(StageDone{Pipeline: name, Index: i, Type: sp.typ, Duration: d})
	if err := ctx.Err(); err != nil {
		return tree, fmt.Errorf("pipeline %s: %w", name, context.Cause(ctx))
	}
	last := i == len(pp.stages)-1
	switch {
	case last && pp.final:
		start := time.Now()
		if err := b.store.CommitMove(sp.key, tree, objectMeta{Pipeline: name, Stage: i, Type: sp.typ}); err != nil {
			return tree, stages.At(err, "", name, i, sp.typ)
		}
		o.events(Commit{Pipeline: name, Index: i, Key: sp.key, Duration: time.Since(start)})
		dir, ok := b.store.DirTree(sp.key)
		if !ok {
			return tree, fmt.Errorf("pipeline %s: committed tree %s not found", name, sp.key)
		}
		return dir, nil
	case mustCommit:
		return tree, b.commit(pp, i, tree, false)
	case last || sp.typ == "debs":
		return tree, b.commit(pp, i, tree, last)
	case o.commitAfter >= 0 && d >= o.commitAfter:
		// A slow stage's tree of few files (stored as such) is a disk
		// image: keeping it costs gigabytes of cache, and making it again
		// from the tree before costs about what copying it out of the
		// cache would. Only commitAfter 0 (every stage) keeps those.
		if o.commitAfter > 0 {
			if n, err := countEntries(tree, dirFormatMax+1); err != nil || n <= dirFormatMax {
				return tree, nil
			}
		}
		return tree, b.commit(pp, i, tree, false)
	}
	return tree, nil
}

// runner returns a runner for a stage that must leave protected unchanged.
func (b *builder) runner(protected []string) *Runner {
	return NewRunner(WithReadOnlyTrees(protected...), WithSourceDateEpoch(b.lf.SourceDateEpoch),
		WithRunnerLog(b.o.log), WithRunnerTempDir(b.work.tmp))
}

// flight is a stage that several pipelines of the build share (same key:
// same stage, options and everything before it, as the build and os
// pipelines' essential packages): one pipeline runs and commits it, the
// others wait and copy its tree.
type flight struct {
	pipeline string
	done     chan struct{}
	err      error
}

func (f *flight) finish(err error) {
	f.err = err
	close(f.done)
}

// waiting is the error of a pipeline stopped while it waited for another.
type waiting struct{ error }

func (w waiting) Unwrap() error { return w.error }

// join returns the flight of a shared key, and whether the caller leads it
// (runs the stage); nil for a key no other pipeline has.
func (b *builder) join(key, pipeline string) (f *flight, leader bool) {
	b.flightsMu.Lock()
	defer b.flightsMu.Unlock()
	if !b.shared[key] {
		return nil, false
	}
	if f = b.flights[key]; f != nil {
		return f, false
	}
	f = &flight{pipeline: pipeline, done: make(chan struct{})}
	b.flights[key] = f
	return f, true
}

// follow waits for the pipeline leading stage i's flight and replaces tree
// with the stage's committed tree.
func (b *builder) follow(ctx context.Context, pp *pipelinePlan, i int, f *flight, tree string) error {
	name, sp := pp.p.Name, pp.stages[i]
	start := time.Now()
	b.o.events(StageStart{Pipeline: name, Index: i, Type: sp.typ})
	select {
	case <-f.done:
	case <-ctx.Done():
		return waiting{fmt.Errorf("pipeline %s: %w", name, context.Cause(ctx))}
	}
	if f.err != nil {
		return stages.At(errors.New("the same stage failed in another pipeline"), "", name, i, sp.typ)
	}
	if err := os.RemoveAll(tree); err != nil {
		return fmt.Errorf("pipeline %s: %w", name, err)
	}
	if err := b.store.Materialize(ctx, sp.key, tree); err != nil {
		return fmt.Errorf("pipeline %s: %w", name, err)
	}
	b.o.events(StageDone{Pipeline: name, Index: i, Type: sp.typ, SharedWith: f.pipeline, Duration: time.Since(start)})
	return nil
}
