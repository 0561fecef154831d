package sources

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

// DefaultSnapshotURL is Debian's snapshot archive.
const DefaultSnapshotURL = "https://snapshot.debian.org/"

// SnapshotLag is added to a repository's Release Date to name the snapshot
// that holds its files. snapshot.debian.org serves, for a time T, the last
// import at or before T; an import runs a while after the archive publishes
// a Release (every six hours for the main archive), so the import at the
// Date itself may predate the files that Release added. Files the lockfile
// pins were in the pool when it was locked, and Debian keeps a superseded
// file in the pool well beyond this lag, so Date + SnapshotLag holds every
// one of them.
const SnapshotLag = 6 * time.Hour

// httpGet fetches u; 404 and 410 wrap ErrNotFound.
func httpGet(ctx context.Context, client *http.Client, u string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, &StatusError{URL: u, Status: resp.Status, Code: resp.StatusCode}
	}
	return resp.Body, nil
}

// mirror is the URL the lockfile pins each package to.
type mirror struct{ client *http.Client }

// Mirror returns the source that downloads each package from its URL in
// the lockfile.
func Mirror(client *http.Client) Source {
	if client == nil {
		client = http.DefaultClient
	}
	return &mirror{client: client}
}

func (m *mirror) String() string { return "mirror" }

func (m *mirror) Locate(p *manifest.Package) string { return p.URL }

func (m *mirror) Open(ctx context.Context, p *manifest.Package) (io.ReadCloser, error) {
	return httpGet(ctx, m.client, p.URL)
}

// snapshot maps a package's URL under a repository to the same path in
// the snapshot archive at the time the repository was read.
type snapshot struct {
	base   string
	client *http.Client
	// archives maps a repository URI (no trailing slash) to its snapshot
	// prefix, base + "archive/NAME/TIMESTAMP".
	archives map[string]string
}

// Snapshot returns the source that takes each package from the snapshot
// archive at base (DefaultSnapshotURL for Debian's): for a package under
// the repository URI .../NAME, base/archive/NAME/T/ + its path under the
// URI, where T is the newest Release Date of the lockfile's suites at that
// URI plus SnapshotLag. The Dates are the lockfile's, so the same lockfile
// always asks for the same snapshot.
func Snapshot(base string, repos []manifest.Repository, client *http.Client) Source {
	if client == nil {
		client = http.DefaultClient
	}
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	newest := map[string]time.Time{}
	for _, r := range repos {
		d, err := time.Parse(time.RFC3339, r.Date)
		if err != nil {
			continue
		}
		uri := strings.TrimRight(r.URI, "/")
		if d.After(newest[uri]) {
			newest[uri] = d
		}
	}
	s := &snapshot{base: base, client: client, archives: map[string]string{}}
	for uri, d := range newest {
		u, err := url.Parse(uri)
		if err != nil {
			continue
		}
		name := path.Base(u.Path)
		if name == "/" || name == "." || name == "" {
			continue
		}
		s.archives[uri] = base + "archive/" + name + "/" + SnapshotTime(d)
	}
	return s
}

// SnapshotTime is the snapshot timestamp for a Release Date: Date +
// SnapshotLag, as snapshot.debian.org writes it (20261205T201500Z).
func SnapshotTime(date time.Time) string {
	return date.Add(SnapshotLag).UTC().Format("20060102T150405Z")
}

func (s *snapshot) String() string { return "snapshot " + s.base }

// Locate is where the snapshot archive keeps p, or "" when p's URL lies
// under none of the lockfile's repositories.
func (s *snapshot) Locate(p *manifest.Package) string {
	best := ""
	for uri := range s.archives {
		if strings.HasPrefix(p.URL, uri+"/") && len(uri) > len(best) {
			best = uri
		}
	}
	if best == "" {
		return ""
	}
	return s.archives[best] + p.URL[len(best):]
}

func (s *snapshot) Open(ctx context.Context, p *manifest.Package) (io.ReadCloser, error) {
	u := s.Locate(p)
	if u == "" {
		return nil, notFound(fmt.Sprintf("%s is under none of the lockfile's repositories", p.URL))
	}
	return httpGet(ctx, s.client, u)
}
