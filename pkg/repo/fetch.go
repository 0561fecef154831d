package repo

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/image-builder-action/image-builder-action/pkg/atomicfile"
	"github.com/image-builder-action/image-builder-action/pkg/decompress"
)

// Client fetches and verifies apt repository metadata: InRelease files
// checked against a keyring, then Packages indices checked against the
// digests the signed InRelease lists.
//
// The zero value is ready to use. Set the fields before the first call and
// leave them alone afterwards; a Client is safe for concurrent use.
//
// Caching: with CacheDir set, every index is stored there once verified,
// named by its SHA256 (CacheDir/sha256/<hex>, written to a temporary file and
// renamed). When the InRelease lists the digest of the uncompressed index
// (Debian's does, although it serves only compressed ones), the uncompressed
// text is what is stored: reading it back costs a hash and a parse instead
// of a decompression, which is what keeps a warm Fetch fast. Otherwise the
// compressed file is stored under its own digest. A cached file is hashed
// again each time it is read; one that does not match is discarded and
// fetched again. Fetching the same InRelease again therefore downloads no
// index. InRelease files themselves are fetched every time (they are small,
// and they are what says whether the cache is current), and kept in
// CacheDir/InRelease/ for Offline use.
type Client struct {
	// HTTP makes the requests; nil means http.DefaultClient.
	HTTP *http.Client
	// CacheDir is where verified indices and InRelease files are kept; ""
	// disables the cache.
	CacheDir string
	// Keyring verifies sources whose SignedBy is empty; "" means
	// DefaultKeyring. Binary and ASCII-armored keyrings are both read.
	Keyring string
	// Now is the clock Date, Valid-Until and key expiry are checked
	// against; nil means time.Now.
	Now func() time.Time
	// Offline makes the Client use only CacheDir: the InRelease files saved
	// by the last online fetch (verified again, including Valid-Until) and
	// the indices they name. Anything missing is an error.
	Offline bool
	// Attempts is how many times a request is tried when it fails in a way
	// that may pass (network errors, HTTP 408, 429 and 5xx); 0 means 3.
	Attempts int
	// Parallel bounds the requests Fetch makes at once; 0 means 4.
	Parallel int
	// Memory, when set, keeps parsed indices for every Client that shares
	// it (see IndexCache); nil parses each index each time.
	Memory *IndexCache

	mu       sync.Mutex
	keyrings map[string]openpgp.EntityList
}

// Index is the metadata of a set of sources for one architecture.
type Index struct {
	// Releases are the verified releases, one per source fetched, in the
	// order of the sources; Package.Origin indexes this slice.
	Releases []Release
	// Packages are the packages of every release, component and
	// architecture (the one asked for and "all"), in that order.
	Packages []Package
}

// StatusError is an HTTP response other than 200 OK.
type StatusError struct {
	URL        string
	StatusCode int
	Status     string
}

func (e *StatusError) Error() string { return fmt.Sprintf("fetching %s: HTTP %s", e.URL, e.Status) }

// ChecksumError says a file's content is not what the InRelease (or the
// cache's name for it) promised.
type ChecksumError struct {
	URL        string
	WantSHA256 string
	WantSize   int64
	GotSHA256  string
	// GotSize is the bytes read; when the file is longer than WantSize,
	// reading stops there and GotSHA256 covers what was read.
	GotSize int64
}

func (e *ChecksumError) Error() string {
	what := "checksum mismatch"
	switch {
	case e.GotSize < e.WantSize:
		what = "truncated"
	case e.GotSize > e.WantSize:
		what = "longer than listed"
	}
	return fmt.Sprintf("%s: %s: got sha256 %s (%d bytes), want sha256 %s (%d bytes)",
		e.URL, what, e.GotSHA256, e.GotSize, e.WantSHA256, e.WantSize)
}

// transientError marks a failure that a new attempt may not see.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

func isTransient(err error) bool {
	var t *transientError
	return errors.As(err, &t)
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

// maxInRelease bounds what is read of an InRelease file (bookworm's is
// ~150 KB).
const maxInRelease = 64 << 20

// inReleaseURL is where a source's InRelease lives.
func inReleaseURL(src Source) string {
	return strings.TrimRight(src.URI, "/") + "/dists/" + src.Suite + "/InRelease"
}

// FetchRelease fetches src's InRelease, verifies its signature against
// src.SignedBy (or the Client's default keyring), and checks its Date (not
// in the future beyond MaxClockSkew), Valid-Until (not passed) and suite.
// Only the signed text is read.
func (c *Client) FetchRelease(ctx context.Context, src Source) (*Release, *ReleaseIndex, error) {
	u := inReleaseURL(src)
	keyring, err := c.keyring(src.SignedBy)
	if err != nil {
		return nil, nil, fmt.Errorf("verifying %s: %w", u, err)
	}
	var data []byte
	if c.Offline {
		if c.CacheDir == "" {
			return nil, nil, fmt.Errorf("fetching %s: offline and no cache directory", u)
		}
		data, err = os.ReadFile(c.inReleasePath(u))
		if err != nil {
			return nil, nil, fmt.Errorf("fetching %s offline: %w", u, err)
		}
	} else {
		err = c.retry(ctx, func() error {
			var err error
			data, err = c.getBytes(ctx, u, maxInRelease)
			return err
		})
		if err != nil {
			return nil, nil, err
		}
	}
	now := c.now()
	text, keys, err := verifyInRelease(u, data, keyring, now)
	if err != nil {
		return nil, nil, err
	}
	ri, date, validUntil, err := parseRelease(u, text, src, now)
	if err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256(data)
	rel := &Release{Source: src, SHA256: hex.EncodeToString(sum[:]), Date: date, ValidUntil: validUntil, Keys: keys}
	if c.CacheDir != "" && !c.Offline {
		if err := writeFileAtomic(c.inReleasePath(u), data); err != nil {
			return nil, nil, fmt.Errorf("caching %s: %w", u, err)
		}
	}
	return rel, ri, nil
}

// inReleasePath names a cached InRelease after its URL, as apt names its
// lists: scheme dropped, '/' turned into '_'.
func (c *Client) inReleasePath(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
	}
	return filepath.Join(c.CacheDir, "InRelease", strings.ReplaceAll(u, "/", "_"))
}

// keyring returns the keys for a SignedBy value, loading files once.
func (c *Client) keyring(signedBy string) (openpgp.EntityList, error) {
	if signedBy == "" {
		signedBy = c.Keyring
		if signedBy == "" {
			signedBy = DefaultKeyring
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.keyrings[signedBy]; ok {
		return el, nil
	}
	var el openpgp.EntityList
	if strings.HasPrefix(strings.TrimSpace(signedBy), armoredKeyHeader) {
		keys, err := parseKeyring("(inline Signed-By key)", []byte(signedBy))
		if err != nil {
			return nil, err
		}
		el = keys
	} else {
		for _, p := range splitList(signedBy, ",") {
			if !filepath.IsAbs(p) {
				// apt also takes fingerprints here, meaning keys of its
				// trusted.gpg; a lock must name the keyring it trusts.
				return nil, fmt.Errorf("Signed-By %q: only keyring paths and inline keys are supported", p)
			}
			keys, err := readKeyring(p)
			if err != nil {
				return nil, err
			}
			el = append(el, keys...)
		}
	}
	if c.keyrings == nil {
		c.keyrings = map[string]openpgp.EntityList{}
	}
	c.keyrings[signedBy] = el
	return el, nil
}

// retry runs f until it succeeds, fails in a way that is not transient, or
// has been tried Attempts times, waiting a little longer each time.
func (c *Client) retry(ctx context.Context, f func() error) error {
	attempts := c.Attempts
	if attempts <= 0 {
		attempts = 3
	}
	var err error
	for i := range attempts {
		if i > 0 {
			t := time.NewTimer(time.Duration(100<<(i-1)) * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return err
			case <-t.C:
			}
		}
		if err = f(); err == nil || !isTransient(err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// open starts a GET of u. Errors name u; a non-200 answer is a
// *StatusError. Transient failures are marked for retry.
func (c *Client) open(ctx context.Context, u string) (io.ReadCloser, error) {
	if strings.HasPrefix(u, "file:") {
		pu, err := url.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("fetching %s: %w", u, err)
		}
		f, err := os.Open(pu.Path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &StatusError{URL: u, StatusCode: http.StatusNotFound, Status: "404 Not Found"}
		}
		if err != nil {
			return nil, fmt.Errorf("fetching %s: %w", u, err)
		}
		return f, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", u, err)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message repeats the URL
		}
		err = fmt.Errorf("fetching %s: %w", u, err)
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, &transientError{err}
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		err := &StatusError{URL: u, StatusCode: resp.StatusCode, Status: resp.Status}
		if resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			return nil, &transientError{err}
		}
		return nil, err
	}
	return &netBody{resp.Body, u}, nil
}

// netBody marks read errors of a response body as transient and names the
// URL in them.
type netBody struct {
	rc io.ReadCloser
	u  string
}

func (b *netBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		err = &transientError{fmt.Errorf("reading %s: %w", b.u, err)}
	}
	return n, err
}

func (b *netBody) Close() error { return b.rc.Close() }

// getBytes reads all of u, at most limit bytes.
func (c *Client) getBytes(ctx context.Context, u string, limit int64) ([]byte, error) {
	body, err := c.open(ctx, u)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("fetching %s: larger than %d bytes", u, limit)
	}
	return data, nil
}

// verifier hashes what is read through it and fails, at EOF or as soon as
// the size is exceeded, if the content is not the one listed.
type verifier struct {
	r    io.Reader
	url  string
	want IndexFile
	h    hash.Hash
	n    int64
	err  error
}

func newVerifier(r io.Reader, url string, want IndexFile) *verifier {
	return &verifier{r: r, url: url, want: want, h: sha256.New()}
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if rest := v.want.Size - v.n + 1; int64(len(p)) > rest {
		// Read at most one byte past the listed size: enough to tell the
		// file is too long without reading an endless one.
		p = p[:rest]
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.n > v.want.Size {
		v.err = v.mismatch()
		return n, v.err
	}
	if err == io.EOF {
		if got := hex.EncodeToString(v.h.Sum(nil)); v.n != v.want.Size || got != v.want.SHA256 {
			v.err = v.mismatch()
			return n, v.err
		}
	}
	return n, err
}

func (v *verifier) mismatch() error {
	return &ChecksumError{URL: v.url, WantSHA256: v.want.SHA256, WantSize: v.want.Size,
		GotSHA256: hex.EncodeToString(v.h.Sum(nil)), GotSize: v.n}
}

// compressions are the index forms tried, best first. Measured on bookworm
// main amd64 (50 MB): gzip decodes in ~0.25 s in Go, xz in ~1.2 s
// (ulikunitz/xz), while the download is 12 MB against 8.8 MB; at the
// archive's ~33 MB/s .gz is ready first, so it is preferred.
var compressions = []string{".gz", ".xz", ""}

// decoder returns a reader of the uncompressed form of r.
func decoder(ext string, r io.Reader) (io.Reader, error) {
	switch ext {
	case ".gz":
		return gzip.NewReader(r)
	case ".xz":
		return decompress.XZ(r)
	case "":
		return r, nil
	}
	return nil, fmt.Errorf("unknown compression %q", ext)
}

// FetchPackages returns the packages of one component and architecture of
// a verified release, each with the given origin (the release's index in
// Index.Releases). The index is taken from the Client's Memory or from the
// cache when there, else downloaded (by hash when the release allows) and
// verified against the release's SHA256 list while it is parsed.
func (c *Client) FetchPackages(ctx context.Context, ri *ReleaseIndex, component, arch string, origin int) ([]Package, error) {
	pkgs, shared, err := c.packages(ctx, ri, component, arch)
	if err != nil {
		return nil, err
	}
	if shared {
		pkgs = slices.Clone(pkgs)
	}
	for i := range pkgs {
		pkgs[i].Origin = origin
	}
	return pkgs, nil
}

// packages returns one index's packages with Origin 0; shared says they
// belong to c.Memory and must not be modified.
func (c *Client) packages(ctx context.Context, ri *ReleaseIndex, component, arch string) (pkgs []Package, shared bool, err error) {
	load := func() ([]Package, string, error) { return c.loadPackages(ctx, ri, component, arch) }
	if c.Memory == nil {
		pkgs, _, err = load()
		return pkgs, false, err
	}
	// The key is the digest the cache directory would name: the
	// uncompressed index's when listed, else the first form's.
	name := component + "/binary-" + arch + "/Packages"
	key := indexKey{prefix: strings.TrimRight(ri.Source.URI, "/")}
	if f, ok := ri.Files[name]; ok {
		key.sha256 = f.SHA256
	} else {
		for _, ext := range compressions {
			if f, ok := ri.Files[name+ext]; ok {
				key.sha256 = f.SHA256
				break
			}
		}
	}
	if key.sha256 == "" {
		pkgs, _, err = load()
		return pkgs, false, err
	}
	pkgs, err = c.Memory.get(ctx, key, load)
	return pkgs, err == nil, err
}

// loadPackages reads one index from the cache directory or the network,
// and says which digest it verified the packages against.
func (c *Client) loadPackages(ctx context.Context, ri *ReleaseIndex, component, arch string) ([]Package, string, error) {
	const origin = 0
	src := ri.Source
	dir := component + "/binary-" + arch + "/"
	name := dir + "Packages"
	distURL := strings.TrimRight(src.URI, "/") + "/dists/" + src.Suite + "/"
	var plain *IndexFile
	if f, ok := ri.Files[name]; ok {
		plain = &f
	}
	type candidate struct {
		ext string
		f   IndexFile
	}
	var cands []candidate
	for _, ext := range compressions {
		if f, ok := ri.Files[name+ext]; ok {
			cands = append(cands, candidate{ext, f})
		}
	}
	if len(cands) == 0 {
		return nil, "", fmt.Errorf("fetching packages: %s lists no %s index", inReleaseURL(src), name)
	}

	// The cache first: the uncompressed index when its digest is listed,
	// else a compressed one.
	if c.CacheDir != "" {
		if plain != nil {
			if pkgs, ok, err := c.parseCached(*plain, "", src.URI, origin); ok || err != nil {
				return pkgs, plain.SHA256, err
			}
		} else {
			for _, cd := range cands {
				if pkgs, ok, err := c.parseCached(cd.f, cd.ext, src.URI, origin); ok || err != nil {
					return pkgs, cd.f.SHA256, err
				}
			}
		}
	}
	if c.Offline {
		return nil, "", fmt.Errorf("fetching %s%s offline: not in cache %s", distURL, name, c.CacheDir)
	}

	var (
		notFound []string
		firstErr error
	)
	for _, cd := range cands {
		var urls []string
		if ri.AcquireByHash {
			urls = append(urls, distURL+dir+"by-hash/SHA256/"+cd.f.SHA256)
		}
		urls = append(urls, distURL+name+cd.ext)
		for _, u := range urls {
			var pkgs []Package
			err := c.retry(ctx, func() error {
				var err error
				pkgs, err = c.download(ctx, u, cd.ext, cd.f, plain, src.URI, origin)
				return err
			})
			if err == nil {
				// download verified the uncompressed text when its
				// digest is listed, else the form it read.
				if plain != nil {
					return pkgs, plain.SHA256, nil
				}
				return pkgs, cd.f.SHA256, nil
			}
			var se *StatusError
			if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
				return nil, "", err
			}
			notFound = append(notFound, u)
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	return nil, "", fmt.Errorf("fetching %s%s: no form of it is served (HTTP 404 for %s): %w",
		distURL, name, strings.Join(notFound, ", "), firstErr)
}

// download fetches one index from u, verifies it (compressed and, when
// listed, uncompressed) while parsing it, and caches it.
func (c *Client) download(ctx context.Context, u, ext string, f IndexFile, plain *IndexFile, baseURI string, origin int) (pkgs []Package, err error) {
	body, err := c.open(ctx, u)
	if err != nil {
		return nil, err
	}
	defer body.Close()

	var tmp *os.File
	if c.CacheDir != "" {
		dir := filepath.Join(c.CacheDir, "sha256")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("caching %s: %w", u, err)
		}
		if tmp, err = os.CreateTemp(dir, ".tmp-*"); err != nil {
			return nil, fmt.Errorf("caching %s: %w", u, err)
		}
		defer func() {
			if tmp != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
	}

	comp := newVerifier(body, u, f)
	var compIn io.Reader = comp
	if tmp != nil && plain == nil {
		compIn = io.TeeReader(comp, tmp)
	}
	var uncompV *verifier
	r, derr := decoder(ext, bufio.NewReaderSize(compIn, 256<<10))
	if derr == nil {
		if plain != nil && ext != "" {
			uncompV = newVerifier(r, u+" (uncompressed)", *plain)
			r = uncompV
		}
		if tmp != nil && plain != nil {
			r = io.TeeReader(r, tmp)
		}
		pkgs, err = ParsePackages(r, baseURI, origin)
		if err == nil {
			// Let the uncompressed verifier see EOF even if the parser
			// stopped right at the end of the data.
			_, err = io.Copy(io.Discard, r)
		}
	} else {
		err = derr
	}
	// Read the rest so the digest covers the whole file, even when the
	// decoder or the parser stopped early: a mismatch explains a decoding
	// or parse error better than the error itself.
	_, drainErr := io.Copy(io.Discard, compIn)
	switch {
	case comp.err != nil:
		return nil, comp.err
	case uncompV != nil && uncompV.err != nil:
		return nil, uncompV.err
	case drainErr != nil:
		return nil, drainErr
	case err != nil && isTransient(err):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", u, err)
	}
	if tmp != nil {
		key := f.SHA256
		if plain != nil {
			key = plain.SHA256
		}
		if err := tmp.Close(); err != nil {
			return nil, fmt.Errorf("caching %s: %w", u, err)
		}
		if err := os.Rename(tmp.Name(), c.cachePath(key)); err != nil {
			return nil, fmt.Errorf("caching %s: %w", u, err)
		}
		tmp = nil
	}
	return pkgs, nil
}

func (c *Client) cachePath(sha string) string {
	return filepath.Join(c.CacheDir, "sha256", sha)
}

// parseCached parses the cached file with digest f, of compression ext. ok
// is false when the file is not cached or does not match its name (it is
// then removed, to be fetched again).
func (c *Client) parseCached(f IndexFile, ext, baseURI string, origin int) (pkgs []Package, ok bool, err error) {
	p := c.cachePath(f.SHA256)
	file, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading cache: %w", err)
	}
	defer file.Close()
	v := newVerifier(file, p, f)
	r, err := decoder(ext, bufio.NewReaderSize(v, 256<<10))
	if err == nil {
		pkgs, err = ParsePackages(r, baseURI, origin)
	}
	// Hash to the end even after an error: only a file that matches its
	// name can be blamed for a parse error.
	if _, derr := io.Copy(io.Discard, v); err == nil {
		err = derr
	}
	if v.err != nil {
		// Corrupt cache entry: drop it and fetch again.
		file.Close()
		os.Remove(p)
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading cached index %s: %w", p, err)
	}
	return pkgs, true, nil
}

// Fetch fetches the releases of srcs and their Packages indices for arch
// and, where the archive keeps them apart, for "all". Sources limited to
// other architectures are left out. Requests run in parallel (see
// Client.Parallel); the result's order follows srcs.
func (c *Client) Fetch(ctx context.Context, srcs []Source, arch string) (*Index, error) {
	var use []Source
	for _, s := range srcs {
		if len(s.Architectures) == 0 || slices.Contains(s.Architectures, arch) {
			use = append(use, s)
		}
	}
	parallel := c.Parallel
	if parallel <= 0 {
		parallel = 4
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, parallel)
	run := func(n int, f func(i int) error) error {
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					errs[i] = ctx.Err()
					return
				}
				defer func() { <-sem }()
				if errs[i] = f(i); errs[i] != nil {
					cancel()
				}
			}()
		}
		wg.Wait()
		// The first failure in source order, not a cancellation it caused.
		for _, err := range errs {
			if err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
		}
		return errors.Join(errs...)
	}

	rels := make([]Release, len(use))
	ris := make([]*ReleaseIndex, len(use))
	if err := run(len(use), func(i int) error {
		rel, ri, err := c.FetchRelease(ctx, use[i])
		if err != nil {
			return err
		}
		rels[i], ris[i] = *rel, ri
		return nil
	}); err != nil {
		return nil, err
	}

	type job struct {
		origin     int
		comp, arch string
	}
	var jobs []job
	for i, ri := range ris {
		if !slices.Contains(ri.Architectures, arch) {
			return nil, fmt.Errorf("fetching packages: %s has no architecture %s (it has %s)",
				inReleaseURL(ri.Source), arch, strings.Join(ri.Architectures, " "))
		}
		withAll := arch != "all" && slices.Contains(ri.Architectures, "all") && !ri.NoArchAllPackages
		for _, comp := range ri.Source.Components {
			// The files, not Components, decide: Debian's security suite
			// says "updates/main" there but lists main/binary-*/….
			if !ri.hasPackages(comp, arch) {
				return nil, fmt.Errorf("fetching packages: %s lists no %s/binary-%s/Packages index (components: %s)",
					inReleaseURL(ri.Source), comp, arch, strings.Join(ri.Components, " "))
			}
			jobs = append(jobs, job{i, comp, arch})
			// Some components have no binary-all index even where others do.
			if withAll && ri.hasPackages(comp, "all") {
				jobs = append(jobs, job{i, comp, "all"})
			}
		}
	}
	results := make([][]Package, len(jobs))
	if err := run(len(jobs), func(j int) error {
		jb := jobs[j]
		pkgs, _, err := c.packages(ctx, ris[jb.origin], jb.comp, jb.arch)
		results[j] = pkgs
		return err
	}); err != nil {
		return nil, err
	}
	n := 0
	for _, r := range results {
		n += len(r)
	}
	idx := &Index{Releases: rels, Packages: make([]Package, 0, n)}
	// The copy is the caller's (results may be shared with c.Memory), and
	// the packages learn their origin here.
	for j, r := range results {
		start := len(idx.Packages)
		idx.Packages = append(idx.Packages, r...)
		for i := start; i < len(idx.Packages); i++ {
			idx.Packages[i].Origin = jobs[j].origin
		}
	}
	return idx, nil
}

// hasPackages reports whether the release lists a Packages index, in any
// form, for the component and architecture.
func (ri *ReleaseIndex) hasPackages(comp, arch string) bool {
	name := comp + "/binary-" + arch + "/Packages"
	for _, ext := range compressions {
		if _, ok := ri.Files[name+ext]; ok {
			return true
		}
	}
	return false
}

// writeFileAtomic writes data to path, making its directory, so readers
// never see a partial file.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o644)
}
