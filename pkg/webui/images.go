package webui

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/distro"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
)

type buildData struct {
	Blueprints []StoredBlueprint
	Blueprint  string
	Distros    []buildDistro
	Types      []buildType
	AllArches  []string
	Uploads    []string
	Error      string
	// Chosen are the values posted back, to keep them after an error.
	Distro         string
	Arches, Chosen []string
	Upload         string
	// PublishTo and Sign are the service's (Options); Publish and
	// SignIt what was posted.
	PublishTo []string
	Sign      bool
	Publish   string
	SignIt    bool
}

type buildDistro struct {
	Name, Description string
	Arches            []string
}

type buildType struct {
	Name, Description, Filename string
	Arches                      []string
	Bootable                    bool
}

// catalog is what `ibuild list` shows: distros with their architectures
// and the image types.
func catalog(defs *distro.Defs) ([]buildDistro, []buildType) {
	var ds []buildDistro
	for _, n := range defs.DistroNames() {
		d := defs.Distros[n]
		ds = append(ds, buildDistro{Name: n, Description: d.Description, Arches: d.ArchNames()})
	}
	var ts []buildType
	for _, n := range defs.TypeNames() {
		t := defs.Types[n]
		ts = append(ts, buildType{Name: n, Description: t.Description, Filename: t.Filename, Arches: t.Arches, Bootable: t.Bootable})
	}
	return ds, ts
}

func (s *Server) buildForm(r *http.Request, sess *session, d *buildData) error {
	bps, err := s.opts.Blueprints.List(r.Context(), sess.owner)
	if err != nil {
		return err
	}
	d.Blueprints = bps
	d.Distros, d.Types = catalog(s.defs)
	for _, x := range d.Distros {
		for _, a := range x.Arches {
			if !contains(d.AllArches, a) {
				d.AllArches = append(d.AllArches, a)
			}
		}
	}
	sort.Strings(d.AllArches)
	d.Uploads = s.opts.Uploads
	d.PublishTo, d.Sign = s.opts.PublishTo, s.opts.Sign
	return nil
}

func (s *Server) buildPage(w http.ResponseWriter, r *http.Request, sess *session) {
	d := &buildData{Blueprint: r.URL.Query().Get("blueprint"), Arches: []string{lock.HostArch()}}
	if err := s.buildForm(r, sess, d); err != nil {
		s.fail(w, r, sess, err)
		return
	}
	s.render(w, r, http.StatusOK, "build", page{Title: "Build images", Nav: "build", CSRF: sess.csrf, Owner: sess.owner, Data: d})
}

// build starts a compose of a saved blueprint: every chosen type for every
// chosen architecture that the type is made for.
func (s *Server) build(w http.ResponseWriter, r *http.Request, sess *session) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	d := &buildData{Blueprint: r.PostForm.Get("blueprint"), Distro: r.PostForm.Get("distro"),
		Arches: r.PostForm["arch"], Chosen: r.PostForm["type"], Upload: r.PostForm.Get("upload"),
		Publish: strings.TrimSpace(r.PostForm.Get("publish")), SignIt: r.PostForm.Get("sign") != ""}
	refuse := func(msg string) {
		d.Error = msg
		if err := s.buildForm(r, sess, d); err != nil {
			s.fail(w, r, sess, err)
			return
		}
		s.render(w, r, http.StatusUnprocessableEntity, "build", page{Title: "Build images", Nav: "build", CSRF: sess.csrf, Owner: sess.owner, Data: d})
	}
	sb, err := s.opts.Blueprints.Get(r.Context(), sess.owner, d.Blueprint, 0)
	if err != nil {
		refuse(fmt.Sprintf("Choose a saved blueprint (%v).", err))
		return
	}
	if d.Upload != "" && !contains(s.opts.Uploads, d.Upload) {
		refuse(fmt.Sprintf("Unknown upload target %q.", d.Upload))
		return
	}
	if d.Publish != "" && len(s.opts.PublishTo) == 0 {
		refuse("This service publishes to no registry.")
		return
	}
	if d.SignIt && (d.Publish == "" || !s.opts.Sign) {
		refuse("Signing needs a repository to publish to, on a service with a signing key.")
		return
	}
	req := ComposeRequest{Owner: sess.owner, Blueprint: sb.Data, Distro: d.Distro}
	var skipped []string
	for _, a := range d.Arches {
		for _, t := range d.Chosen {
			typ, err := s.defs.Type(t)
			if err != nil {
				refuse(err.Error())
				return
			}
			if !contains(typ.Arches, a) {
				skipped = append(skipped, t+" for "+a)
				continue
			}
			req.Images = append(req.Images, ImageRequest{Arch: a, Type: t, Upload: d.Upload, Publish: d.Publish, Sign: d.SignIt})
		}
	}
	if len(req.Images) == 0 {
		msg := "Choose at least one architecture and one image type."
		if len(skipped) > 0 {
			msg = "None of the chosen image types is made for the chosen architectures (" + strings.Join(skipped, ", ") + ")."
		}
		refuse(msg)
		return
	}
	c, err := s.opts.Composes.Submit(r.Context(), req)
	if err != nil {
		refuse("The compose was refused: " + err.Error())
		return
	}
	redirect(w, r, "/images/"+url.PathEscape(c.ID))
}

type imagesData struct {
	Composes []Compose
	Now      time.Time
}

func (s *Server) imageList(w http.ResponseWriter, r *http.Request, sess *session) {
	cs, err := s.opts.Composes.List(r.Context(), sess.owner)
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	s.render(w, r, http.StatusOK, "images", page{Title: "Images", Nav: "images", CSRF: sess.csrf, Owner: sess.owner, Data: imagesData{Composes: cs, Now: time.Now()}})
}

type imageData struct {
	Compose  Compose
	Log      string
	LogCut   bool
	Lockfile *manifest.Lockfile
	// Previous is the compose of the same blueprint before this one, and
	// Diff what changed in the lockfile since.
	Previous *Compose
	Diff     string
	Now      time.Time
}

const logTail = 64 << 10

const streamLifetime = 5 * time.Minute

func (s *Server) imageShow(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx := r.Context()
	id := r.PathValue("id")
	c, err := s.opts.Composes.Get(ctx, sess.owner, id)
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	d := imageData{Compose: c, Now: time.Now()}
	if log, err := s.opts.Composes.Log(ctx, sess.owner, id); err == nil {
		if len(log) > logTail {
			log, d.LogCut = log[len(log)-logTail:], true
		}
		d.Log = string(log)
	}
	if lf, err := s.opts.Composes.Lockfile(ctx, sess.owner, id); err == nil {
		d.Lockfile = lf
		d.Previous, d.Diff = s.previousDiff(r, sess, c, lf)
	}
	s.render(w, r, http.StatusOK, "image", page{Title: "Compose " + id, Nav: "images", CSRF: sess.csrf, Owner: sess.owner, Data: d})
}

// previousDiff finds the newest compose of the same blueprint created
// before c that has a lockfile, and says what changed, as `ibuild diff`
// would.
func (s *Server) previousDiff(r *http.Request, sess *session, c Compose, lf *manifest.Lockfile) (*Compose, string) {
	all, err := s.opts.Composes.List(r.Context(), sess.owner)
	if err != nil {
		return nil, ""
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Created.After(all[j].Created) })
	for _, p := range all {
		if p.ID == c.ID || p.BlueprintName != c.BlueprintName || !p.Created.Before(c.Created) {
			continue
		}
		prev, err := s.opts.Composes.Lockfile(r.Context(), sess.owner, p.ID)
		if err != nil {
			continue
		}
		d := manifest.Compare(prev, lf)
		if d.Empty() {
			return &p, ""
		}
		return &p, d.Text()
	}
	return nil, ""
}

func (s *Server) imageLog(w http.ResponseWriter, r *http.Request, sess *session) {
	log, err := s.opts.Composes.Log(r.Context(), sess.owner, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(log)
}

func (s *Server) imageDownload(w http.ResponseWriter, r *http.Request, sess *session) {
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 0 {
		http.NotFound(w, r)
		return
	}
	a, err := s.opts.Composes.Artifact(r.Context(), sess.owner, r.PathValue("id"), n)
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	defer a.Content.Close()
	name := unsafeFileChars.ReplaceAllString(a.Name, "_")
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, name))
	http.ServeContent(w, r, "", a.ModTime, a.Content)
}

// imageEvents streams server-sent events: the list's rows (or, with
// ?id=, one compose's status) rendered again whenever they change, which
// htmx's sse extension swaps into the page. A Notifier wakes it at once;
// without one, and for the elapsed times, it looks every second.
func (s *Server) imageEvents(w http.ResponseWriter, r *http.Request, sess *session) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ctx := r.Context()
	id := r.URL.Query().Get("id")
	var wake <-chan string
	if n, ok := s.opts.Composes.(Notifier); ok {
		if ch, err := n.Subscribe(ctx, sess.owner); err == nil {
			wake = ch
		}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// A stream ends after a while and the browser opens another, so that
	// none outlives what it was opened for by long.
	end := time.NewTimer(streamLifetime)
	defer end.Stop()
	var last []byte
	for {
		var b bytes.Buffer
		var err error
		if id == "" {
			var cs []Compose
			if cs, err = s.opts.Composes.List(ctx, sess.owner); err == nil {
				err = s.tmpl["images"].ExecuteTemplate(&b, "rows", imagesData{Composes: cs, Now: time.Now()})
			}
		} else {
			var c Compose
			if c, err = s.opts.Composes.Get(ctx, sess.owner, id); err == nil {
				err = s.tmpl["image"].ExecuteTemplate(&b, "status", imageData{Compose: c, Now: time.Now()})
			}
		}
		if err != nil {
			if !errors.Is(err, ctx.Err()) {
				writeEvent(w, "error", []byte(err.Error()))
				fl.Flush()
			}
			return
		}
		if !bytes.Equal(b.Bytes(), last) {
			last = b.Bytes()
			if writeEvent(w, "update", last) != nil {
				return
			}
			fl.Flush()
		}
		select {
		case <-ctx.Done():
			return
		case <-s.opts.Done:
			return
		case <-end.C:
			return
		case <-tick.C:
		case _, ok := <-wake:
			if !ok {
				wake = nil
			}
		}
	}
}

// writeEvent writes one event; each line of data is a data: line.
func writeEvent(w io.Writer, name string, data []byte) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "event: %s\n", name)
	for _, line := range bytes.Split(data, []byte("\n")) {
		b.WriteString("data: ")
		b.Write(bytes.TrimRight(line, "\r"))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}
