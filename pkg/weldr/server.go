// Package weldr serves composer's weldr API — what composer-cli speaks —
// on a unix socket, over pkg/compose: blueprints stored with their
// versions, composes started from them, their status, logs, metadata and
// images. Shapes, routes and error ids are composer's (read from
// osbuild-composer's internal/weldr and weldr-client), so composer-cli and
// cockpit-composer work against it; errors come in composer's envelope
// {"status": false, "errors": [{"id", "msg"}]} with 400 or 404.
package weldr

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/pelletier/go-toml/v2"

	"github.com/image-builder-action/image-builder-action/pkg/blueprint"
	"github.com/image-builder-action/image-builder-action/pkg/compose"
	"github.com/image-builder-action/image-builder-action/pkg/manifest"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

// MaxBody bounds request bodies (a blueprint plus its envelope).
const MaxBody = blueprint.MaxSize + 1<<20

// Server is the weldr API over a compose service.
type Server struct {
	svc   *compose.Service
	store *Store
	owner string
	log   *slog.Logger
	mux   *http.ServeMux
	Build string
}

// Option configures a Server.
type Option func(*Server)

// WithOwner sets the compose owner the socket's users share (default
// "weldr": composer has one namespace for everyone allowed on the socket).
func WithOwner(o string) Option { return func(s *Server) { s.owner = o } }

// WithLogger sets where requests are logged.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// New returns the weldr API over svc, blueprints kept in store.
func New(svc *compose.Service, store *Store, opts ...Option) *Server {
	s := &Server{svc: svc, store: store, owner: "weldr", log: slog.New(slog.DiscardHandler), mux: http.NewServeMux(), Build: "devel"}
	for _, o := range opts {
		o(s)
	}
	s.routes()
	return s
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /api/status", s.status)
	for _, v := range []string{"v0", "v1"} {
		p := "/api/" + v
		s.mux.HandleFunc("GET "+p+"/blueprints/list", s.blueprintsList)
		s.mux.HandleFunc("GET "+p+"/blueprints/info/{names}", s.blueprintsInfo)
		s.mux.HandleFunc("POST "+p+"/blueprints/new", s.blueprintsNew)
		s.mux.HandleFunc("DELETE "+p+"/blueprints/delete/{name}", s.blueprintsDelete)
		s.mux.HandleFunc("GET "+p+"/blueprints/depsolve/{names}", s.blueprintsDepsolve)
		s.mux.HandleFunc("GET "+p+"/blueprints/freeze/{names}", s.blueprintsFreeze)
		s.mux.HandleFunc("GET "+p+"/blueprints/changes/{names}", s.blueprintsChanges)
		s.mux.HandleFunc("POST "+p+"/compose", s.composeStart)
		s.mux.HandleFunc("GET "+p+"/compose/types", s.composeTypes)
		s.mux.HandleFunc("GET "+p+"/compose/queue", s.composeQueue)
		s.mux.HandleFunc("GET "+p+"/compose/finished", s.composeFinished)
		s.mux.HandleFunc("GET "+p+"/compose/failed", s.composeFailed)
		s.mux.HandleFunc("GET "+p+"/compose/status/{uuids}", s.composeStatus)
		s.mux.HandleFunc("GET "+p+"/compose/info/{uuid}", s.composeInfo)
		s.mux.HandleFunc("GET "+p+"/compose/log/{uuid}", s.composeLog)
		s.mux.HandleFunc("GET "+p+"/compose/image/{uuid}", s.composeImage)
		s.mux.HandleFunc("GET "+p+"/compose/logs/{uuid}", s.composeLogs)
		s.mux.HandleFunc("GET "+p+"/compose/metadata/{uuid}", s.composeMetadata)
		s.mux.HandleFunc("GET "+p+"/compose/results/{uuid}", s.composeResults)
		s.mux.HandleFunc("DELETE "+p+"/compose/delete/{uuids}", s.composeDelete)
		s.mux.HandleFunc("DELETE "+p+"/compose/cancel/{uuid}", s.composeCancel)
		s.mux.HandleFunc("GET "+p+"/distros/list", s.distrosList)
	}
}

// ServeHTTP bounds the body, answers unknown routes in composer's
// envelope and logs each request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	if _, pattern := s.mux.Handler(r); pattern == "" {
		s.fail(w, http.StatusNotFound, "HTTPError", "Not Found")
	} else {
		s.mux.ServeHTTP(w, r)
	}
	s.log.DebugContext(r.Context(), "weldr request", "method", r.Method, "path", r.URL.Path, "seconds", time.Since(start).Seconds())
}

type apiError struct {
	ID  string `json:"id"`
	Msg string `json:"msg"`
}

type statusResponse struct {
	Status bool       `json:"status"`
	Errors []apiError `json:"errors,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) fail(w http.ResponseWriter, code int, id, msg string) {
	writeJSON(w, code, statusResponse{Status: false, Errors: []apiError{{ID: id, Msg: msg}}})
}

func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	s.log.ErrorContext(r.Context(), "weldr request failed", "path", r.URL.Path, "err", err)
	s.fail(w, http.StatusInternalServerError, "InternalServerError", err.Error())
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"api": "1", "db_supported": true, "db_version": "0", "schema_version": "0",
		"backend": "osbuild-composer", "build": s.Build, "messages": []string{},
	})
}

// page reads offset and limit (composer's default limit is 20).
func page(w http.ResponseWriter, r *http.Request, s *Server) (offset, limit int, ok bool) {
	offset, limit = 0, 20
	for _, p := range []struct {
		name string
		v    *int
	}{{"offset", &offset}, {"limit", &limit}} {
		if q := r.URL.Query().Get(p.name); q != "" {
			n, err := strconv.Atoi(q)
			if err != nil || n < 0 {
				s.fail(w, http.StatusBadRequest, "BadLimitOrOffset", fmt.Sprintf("invalid value for '%s': %q", p.name, q))
				return 0, 0, false
			}
			*p.v = n
		}
	}
	return offset, limit, true
}

func window[T any](all []T, offset, limit int) []T {
	if offset > len(all) {
		offset = len(all)
	}
	end := min(offset+limit, len(all))
	return all[offset:end]
}

func (s *Server) blueprintsList(w http.ResponseWriter, r *http.Request) {
	offset, limit, ok := page(w, r, s)
	if !ok {
		return
	}
	names, err := s.store.Names()
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"blueprints": nonNil(window(names, offset, limit)), "total": len(names), "offset": offset, "limit": limit})
}

func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}

func splitNames(v string) []string {
	var out []string
	for _, n := range strings.Split(v, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// decoded returns a stored blueprint as a generic JSON object, so that
// what composer-cli prints has the blueprint's own fields only.
func (s *Server) stored(name string) (map[string]any, json.RawMessage, error) {
	raw, err := s.store.Get(name)
	if err != nil {
		return nil, nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, nil, err
	}
	// composer always lists these, empty or not.
	for _, k := range []string{"packages", "modules", "groups"} {
		if _, ok := m[k]; !ok {
			m[k] = []any{}
		}
	}
	return m, raw, nil
}

func toTOML(raw json.RawMessage) ([]byte, error) {
	var bp blueprint.Blueprint
	if err := json.Unmarshal(raw, &bp); err != nil {
		return nil, err
	}
	return toml.Marshal(bp)
}

func (s *Server) blueprintsInfo(w http.ResponseWriter, r *http.Request) {
	names := splitNames(r.PathValue("names"))
	if r.URL.Query().Get("format") == "toml" {
		if len(names) != 1 {
			s.fail(w, http.StatusBadRequest, "BlueprintsError", "toml format is only supported for one blueprint at a time")
			return
		}
		_, raw, err := s.stored(names[0])
		if err != nil {
			s.fail(w, http.StatusBadRequest, "UnknownBlueprint", fmt.Sprintf("%s: blueprint not found", names[0]))
			return
		}
		data, err := toTOML(raw)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "text/x-toml")
		_, _ = w.Write(data)
		return
	}
	bps, changes, errs := []any{}, []any{}, []apiError{}
	for _, n := range names {
		m, _, err := s.stored(n)
		if err != nil {
			errs = append(errs, apiError{"UnknownBlueprint", n + ": "})
			continue
		}
		bps = append(bps, m)
		changes = append(changes, map[string]any{"name": n, "changed": false})
	}
	if len(bps) == 0 && len(errs) > 0 {
		writeJSON(w, http.StatusBadRequest, statusResponse{Errors: errs})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"blueprints": bps, "changes": changes, "errors": errs})
}

func (s *Server) blueprintsNew(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		s.fail(w, http.StatusBadRequest, "BlueprintsError", "reading the request: "+err.Error())
		return
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	name := "blueprint.json"
	switch ct {
	case "text/x-toml":
		name = "blueprint.toml"
	case "application/json", "":
	default:
		s.fail(w, http.StatusBadRequest, "BlueprintsError", fmt.Sprintf("blueprint must be text/x-toml or application/json, not %q", ct))
		return
	}
	if len(bytes.TrimSpace(body)) == 0 {
		s.fail(w, http.StatusBadRequest, "BlueprintsError", "Missing blueprint")
		return
	}
	bp, err := blueprint.Parse(name, body)
	if err != nil {
		s.fail(w, http.StatusBadRequest, "BlueprintsError", err.Error())
		return
	}
	// Composer turns spaces in names into dashes.
	bp.Name = strings.ReplaceAll(bp.Name, " ", "-")
	if err := s.store.Push(bp); err != nil {
		s.fail(w, http.StatusBadRequest, "BlueprintsError", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, statusResponse{Status: true})
}

func (s *Server) blueprintsDelete(w http.ResponseWriter, r *http.Request) {
	n := r.PathValue("name")
	if err := s.store.Delete(n); err != nil {
		s.fail(w, http.StatusBadRequest, "BlueprintsError", "Unknown blueprint: "+n)
		return
	}
	writeJSON(w, http.StatusOK, statusResponse{Status: true})
}

func (s *Server) blueprintsChanges(w http.ResponseWriter, r *http.Request) {
	offset, limit, ok := page(w, r, s)
	if !ok {
		return
	}
	out, errs := []any{}, []apiError{}
	for _, n := range splitNames(r.PathValue("names")) {
		ch, err := s.store.Changes(n)
		if err != nil {
			errs = append(errs, apiError{"UnknownBlueprint", n})
			continue
		}
		list := []any{}
		for _, c := range window(ch, offset, limit) {
			list = append(list, map[string]any{"commit": c.Commit, "timestamp": c.Timestamp, "message": c.Message, "revision": nil})
		}
		out = append(out, map[string]any{"name": n, "changes": list, "total": len(ch)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"blueprints": out, "errors": errs, "offset": offset, "limit": limit})
}

// nevra is how composer reports a package; a Debian version maps to
// epoch, upstream version and revision.
type nevra struct {
	Name    string `json:"name"`
	Epoch   int    `json:"epoch"`
	Version string `json:"version"`
	Release string `json:"release"`
	Arch    string `json:"arch"`
}

func toNEVRA(p manifest.Package) nevra {
	n := nevra{Name: p.Name, Arch: p.Arch, Version: p.Version}
	if e, rest, ok := strings.Cut(n.Version, ":"); ok {
		n.Epoch, _ = strconv.Atoi(e)
		n.Version = rest
	}
	if i := strings.LastIndex(n.Version, "-"); i > 0 {
		n.Version, n.Release = n.Version[:i], n.Version[i+1:]
	}
	return n
}

func (s *Server) depsolve(ctx context.Context, name string) (map[string]any, []manifest.Package, *apiError) {
	m, raw, err := s.stored(name)
	if err != nil {
		return nil, nil, &apiError{"UnknownBlueprint", name + ": blueprint not found"}
	}
	pkgs, err := s.svc.Depsolve(ctx, raw, "", archOf(m))
	if err != nil {
		return nil, nil, &apiError{"BlueprintsError", fmt.Sprintf("%s: %v", name, err)}
	}
	return m, pkgs, nil
}

func archOf(m map[string]any) string {
	if a, ok := m["architecture"].(string); ok && a != "" {
		return a
	}
	return compose.HostArch()
}

func (s *Server) blueprintsDepsolve(w http.ResponseWriter, r *http.Request) {
	out, errs := []any{}, []apiError{}
	for _, n := range splitNames(r.PathValue("names")) {
		m, pkgs, e := s.depsolve(r.Context(), n)
		if e != nil {
			errs = append(errs, *e)
			continue
		}
		deps := []nevra{}
		for _, p := range pkgs {
			deps = append(deps, toNEVRA(p))
		}
		out = append(out, map[string]any{"blueprint": m, "dependencies": deps})
	}
	writeJSON(w, http.StatusOK, map[string]any{"blueprints": out, "errors": errs})
}

// blueprintsFreeze pins each package of the blueprint to the version
// depsolving chose.
func (s *Server) blueprintsFreeze(w http.ResponseWriter, r *http.Request) {
	names := splitNames(r.PathValue("names"))
	asTOML := r.URL.Query().Get("format") == "toml"
	if asTOML && len(names) != 1 {
		s.fail(w, http.StatusBadRequest, "BlueprintsError", "toml format is only supported for one blueprint at a time")
		return
	}
	out, errs := []any{}, []apiError{}
	for _, n := range names {
		m, pkgs, e := s.depsolve(r.Context(), n)
		if e != nil {
			errs = append(errs, *e)
			continue
		}
		versions := map[string]string{}
		for _, p := range pkgs {
			versions[p.Name] = p.Version
		}
		for _, k := range []string{"packages", "modules"} {
			list, _ := m[k].([]any)
			for _, it := range list {
				if pm, ok := it.(map[string]any); ok {
					if v, ok := versions[fmt.Sprint(pm["name"])]; ok {
						pm["version"] = v
					}
				}
			}
		}
		if asTOML {
			raw, _ := json.Marshal(m)
			data, err := toTOML(raw)
			if err != nil {
				s.internal(w, r, err)
				return
			}
			w.Header().Set("Content-Type", "text/x-toml")
			_, _ = w.Write(data)
			return
		}
		out = append(out, map[string]any{"blueprint": m})
	}
	if asTOML {
		writeJSON(w, http.StatusBadRequest, statusResponse{Errors: errs})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"blueprints": out, "errors": errs})
}

func (s *Server) distrosList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"distros": s.svc.Defs().DistroNames()})
}

func (s *Server) composeTypes(w http.ResponseWriter, r *http.Request) {
	if d := r.URL.Query().Get("distro"); d != "" {
		if _, err := s.svc.Defs().Distro(d); err != nil {
			s.fail(w, http.StatusBadRequest, "DistroError", "Invalid distro: "+d)
			return
		}
	}
	types := []any{}
	for _, t := range s.svc.Defs().TypeNames() {
		types = append(types, map[string]any{"name": t, "enabled": true})
	}
	writeJSON(w, http.StatusOK, map[string]any{"types": types})
}

// composeRequest is composer's compose start body.
type composeRequest struct {
	BlueprintName string         `json:"blueprint_name"`
	ComposeType   string         `json:"compose_type"`
	Branch        string         `json:"branch"`
	Size          uint64         `json:"size"`
	Upload        *uploadRequest `json:"upload"`
	OSTree        *struct {
		Ref    string `json:"ref"`
		Parent string `json:"parent"`
		URL    string `json:"url"`
	} `json:"ostree"`
}

type uploadRequest struct {
	Provider  string          `json:"provider"`
	ImageName string          `json:"image_name"`
	Settings  json.RawMessage `json:"settings"`
}

// uploadTarget maps composer's upload settings onto a pkg/upload target.
// Credentials in the request are refused: the workers' own credential
// chains (environment, instance roles) are what uploads use.
func uploadTarget(u *uploadRequest) (*compose.UploadTarget, error) {
	var set map[string]any
	if len(u.Settings) > 0 {
		if err := json.Unmarshal(u.Settings, &set); err != nil {
			return nil, fmt.Errorf("upload settings: %w", err)
		}
	}
	str := func(k string) string { v, _ := set[k].(string); return v }
	for _, k := range []string{"accessKeyID", "secretAccessKey", "sessionToken", "credentials", "client_secret", "storageAccessKey"} {
		if str(k) != "" {
			return nil, fmt.Errorf("upload settings: %s: credentials come from the server's environment, not from requests", k)
		}
	}
	var t compose.UploadTarget
	switch u.Provider {
	case "aws":
		t = compose.UploadTarget{Target: "aws", Options: upload.Options{Region: str("region"), Bucket: str("bucket")}}
	case "aws.s3":
		t = compose.UploadTarget{Target: "aws.s3", Options: upload.Options{Region: str("region"), Bucket: str("bucket"), Endpoint: str("endpoint")}}
	case "gcp":
		t = compose.UploadTarget{Target: "gcp", Options: upload.Options{Region: str("region"), Bucket: str("bucket"), Project: str("project")}}
	case "azure":
		t = compose.UploadTarget{Target: "azure", Options: upload.Options{StorageAccount: str("storageAccount"), Container: str("container"),
			SubscriptionID: str("subscriptionID"), ResourceGroup: str("resourceGroup"), Location: str("location")}}
	default:
		return nil, fmt.Errorf("unknown upload provider %q (aws, aws.s3, gcp, azure)", u.Provider)
	}
	// composer-cli's IMAGE-NAME names the image in the cloud; an image of
	// that name made from another image is not overwritten (the upload
	// fails).
	if u.ImageName != "" {
		if err := upload.CheckImageName(t.Target, u.ImageName); err != nil {
			return nil, fmt.Errorf("upload image_name: %w", err)
		}
		t.Options.ImageName = u.ImageName
	}
	return &t, nil
}

func (s *Server) composeStart(w http.ResponseWriter, r *http.Request) {
	var req composeRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.fail(w, http.StatusBadRequest, "BadRequest", "invalid compose request: "+err.Error())
		return
	}
	if req.BlueprintName == "" {
		s.fail(w, http.StatusBadRequest, "UnknownBlueprint", "Unknown blueprint name: ")
		return
	}
	if req.OSTree != nil && (req.OSTree.Ref != "" || req.OSTree.URL != "" || req.OSTree.Parent != "") {
		s.fail(w, http.StatusBadRequest, "ComposeError", "ostree: Debian images have no OSTree commits")
		return
	}
	raw, err := s.store.Get(req.BlueprintName)
	if err != nil {
		s.fail(w, http.StatusBadRequest, "UnknownBlueprint", "Unknown blueprint name: "+req.BlueprintName)
		return
	}
	if _, err := s.svc.Defs().Type(req.ComposeType); err != nil {
		s.fail(w, http.StatusBadRequest, "ComposeError", fmt.Sprintf("Failed to get compose type %q: invalid image type: %s", req.ComposeType, req.ComposeType))
		return
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	im := compose.ImageRequest{Arch: archOf(m), Type: req.ComposeType, Size: req.Size}
	if req.Upload != nil {
		if im.Upload, err = uploadTarget(req.Upload); err != nil {
			s.fail(w, http.StatusBadRequest, "UploadError", err.Error())
			return
		}
	}
	c, err := s.svc.Submit(r.Context(), s.owner, compose.Request{Blueprint: raw, Images: []compose.ImageRequest{im}})
	var re *compose.RequestError
	if errors.As(err, &re) {
		s.fail(w, http.StatusBadRequest, "ComposeError", re.Error())
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": true, "build_id": c.ID, "warnings": []string{}})
}

// queueStatus is weldr's name of a compose status.
func queueStatus(st compose.Status) string {
	switch st {
	case compose.StatusPending:
		return "WAITING"
	case compose.StatusSuccess:
		return "FINISHED"
	case compose.StatusFailure:
		return "FAILED"
	}
	return "RUNNING"
}

func unix(t *time.Time) any {
	if t == nil {
		return nil
	}
	return float64(t.UnixNano()) / 1e9
}

func composeType(c *compose.Compose) string {
	if len(c.Images) == 0 {
		return ""
	}
	return c.Images[0].Type
}

func imageSize(c *compose.Compose) int64 {
	if len(c.Images) > 0 && c.Images[0].Artifact != nil {
		return c.Images[0].Artifact.Size
	}
	return 0
}

func uploads(c *compose.Compose) []any {
	out := []any{}
	for i, im := range c.Images {
		req := c.Request.Images[i].Upload
		if req == nil {
			continue
		}
		u := map[string]any{"uuid": c.ID, "provider_name": req.Target, "image_name": "", "status": "WAITING", "creation_time": unix(&c.Created)}
		switch {
		case im.Upload != nil:
			// image_name is what the target calls the image (an AMI id,
			// an s3:// object); url is where to fetch it, when it has one.
			u["status"], u["image_name"] = "FINISHED", im.Upload.ID
			if im.Upload.URL != "" {
				u["url"] = im.Upload.URL
			}
		case im.Status == compose.StatusFailure:
			u["status"] = "FAILED"
		case im.Status == compose.StatusUploading:
			u["status"] = "RUNNING"
		}
		out = append(out, u)
	}
	return out
}

func statusOf(c *compose.Compose) map[string]any {
	return map[string]any{
		"id": c.ID, "blueprint": c.BlueprintName, "version": c.BlueprintVersion, "compose_type": composeType(c),
		"image_size": imageSize(c), "queue_status": queueStatus(c.Status), "job_created": unix(&c.Created),
		"job_started": unix(c.Started), "job_finished": unix(c.Finished), "uploads": uploads(c),
	}
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, key string, statuses ...compose.Status) {
	cs, _, err := s.svc.List(r.Context(), s.owner, compose.ListOptions{Statuses: statuses})
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := []any{}
	for _, c := range cs {
		out = append(out, statusOf(c))
	}
	if key == "" {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{key: out})
}

func (s *Server) composeQueue(w http.ResponseWriter, r *http.Request) {
	cs, _, err := s.svc.List(r.Context(), s.owner, compose.ListOptions{Statuses: []compose.Status{compose.StatusPending, compose.StatusBuilding, compose.StatusUploading}})
	if err != nil {
		s.internal(w, r, err)
		return
	}
	waiting, running := []any{}, []any{}
	// Oldest first, as composer lists its queue.
	slices.Reverse(cs)
	for _, c := range cs {
		if c.Status == compose.StatusPending {
			waiting = append(waiting, statusOf(c))
		} else {
			running = append(running, statusOf(c))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"new": waiting, "run": running})
}

func (s *Server) composeFinished(w http.ResponseWriter, r *http.Request) {
	s.list(w, r, "finished", compose.StatusSuccess)
}

func (s *Server) composeFailed(w http.ResponseWriter, r *http.Request) {
	s.list(w, r, "failed", compose.StatusFailure)
}

func (s *Server) composeStatus(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var cs []*compose.Compose
	ids := splitNames(r.PathValue("uuids"))
	if len(ids) == 1 && ids[0] == "*" {
		all, _, err := s.svc.List(r.Context(), s.owner, compose.ListOptions{})
		if err != nil {
			s.internal(w, r, err)
			return
		}
		cs = all
	} else {
		for _, id := range ids {
			c, err := s.svc.Get(r.Context(), s.owner, id)
			if err != nil {
				s.fail(w, http.StatusBadRequest, "UnknownUUID", id+" is not a valid build uuid")
				return
			}
			cs = append(cs, c)
		}
	}
	out := []any{}
	for _, c := range cs {
		if b := q.Get("blueprint"); b != "" && b != c.BlueprintName {
			continue
		}
		if st := q.Get("status"); st != "" && st != queueStatus(c.Status) {
			continue
		}
		if t := q.Get("type"); t != "" && t != composeType(c) {
			continue
		}
		out = append(out, statusOf(c))
	}
	writeJSON(w, http.StatusOK, map[string]any{"uuids": out})
}

// get finds a compose of the socket's owner, answering composer's error
// when there is none.
func (s *Server) get(w http.ResponseWriter, r *http.Request, msgf string) *compose.Compose {
	id := r.PathValue("uuid")
	if _, err := uuid.Parse(id); err != nil {
		s.fail(w, http.StatusBadRequest, "UnknownUUID", fmt.Sprintf(msgf, id))
		return nil
	}
	c, err := s.svc.Get(r.Context(), s.owner, id)
	if errors.Is(err, compose.ErrNotFound) {
		s.fail(w, http.StatusBadRequest, "UnknownUUID", fmt.Sprintf(msgf, id))
		return nil
	}
	if err != nil {
		s.internal(w, r, err)
		return nil
	}
	return c
}

const (
	notValid = "%s is not a valid build uuid"
	notExist = "Compose %s doesn't exist"
)

func (s *Server) composeInfo(w http.ResponseWriter, r *http.Request) {
	c := s.get(w, r, notValid)
	if c == nil {
		return
	}
	var bp map[string]any
	if data, _, err := s.svc.Blueprint(r.Context(), s.owner, c.ID); err == nil {
		_ = json.Unmarshal(data, &bp)
	}
	pkgs := []nevra{}
	if ps, err := s.svc.Packages(r.Context(), s.owner, c.ID); err == nil {
		for _, p := range ps {
			pkgs = append(pkgs, toNEVRA(p))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": c.ID, "config": "", "blueprint": bp, "commit": "", "deps": map[string]any{"packages": pkgs},
		"compose_type": composeType(c), "queue_status": queueStatus(c.Status), "image_size": imageSize(c), "uploads": uploads(c),
	})
}

func (s *Server) readLog(ctx context.Context, c *compose.Compose) ([]byte, error) {
	var buf bytes.Buffer
	if c.Error != "" {
		fmt.Fprintf(&buf, "error: %s\n", c.Error)
	}
	for i := range c.Images {
		rc, err := s.svc.Log(ctx, s.owner, c.ID, i)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(&buf, io.LimitReader(rc, 64<<20))
		rc.Close()
		if err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

func (s *Server) composeLog(w http.ResponseWriter, r *http.Request) {
	c := s.get(w, r, notExist)
	if c == nil {
		return
	}
	if c.Status == compose.StatusPending {
		s.fail(w, http.StatusBadRequest, "BuildInWrongState", fmt.Sprintf("Build %s has not started yet. No logs to view.", c.ID))
		return
	}
	data, err := s.readLog(r.Context(), c)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	// size is the number of kB from the end of the log, as composer does.
	if v := r.URL.Query().Get("size"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 && n*1024 < len(data) {
			data = data[len(data)-n*1024:]
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(data)
}

func attachment(w http.ResponseWriter, name, ctype string) {
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
}

func (s *Server) finished(w http.ResponseWriter, c *compose.Compose) bool {
	if c.Status != compose.StatusSuccess {
		s.fail(w, http.StatusBadRequest, "BuildInWrongState", fmt.Sprintf("Build %s is in wrong state: %s", c.ID, queueStatus(c.Status)))
		return false
	}
	return true
}

// ended refuses a compose still queued or running, as composer does for
// its logs and metadata.
func (s *Server) ended(w http.ResponseWriter, c *compose.Compose) bool {
	if !c.Status.Final() {
		s.fail(w, http.StatusBadRequest, "BuildInWrongState", fmt.Sprintf("Build %s not in FINISHED or FAILED state.", c.ID))
		return false
	}
	return true
}

func (s *Server) composeImage(w http.ResponseWriter, r *http.Request) {
	c := s.get(w, r, notExist)
	if c == nil || !s.finished(w, c) {
		return
	}
	rd, a, err := s.svc.Artifact(r.Context(), s.owner, c.ID, 0)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	defer rd.Close()
	attachment(w, c.ID+"-"+path.Base(a.Name), "application/octet-stream")
	http.ServeContent(w, r, "", time.Time{}, rd)
}

// tarball writes files into a tar stream; each entry is a name and a
// reader of known size.
type tarEntry struct {
	name string
	size int64
	open func() (io.ReadCloser, error)
}

func writeTar(w io.Writer, entries []tarEntry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: e.size, Typeflag: tar.TypeReg, ModTime: time.Now()}); err != nil {
			return err
		}
		rc, err := e.open()
		if err != nil {
			return err
		}
		_, err = io.CopyN(tw, rc, e.size)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

func bytesEntry(name string, data []byte) tarEntry {
	return tarEntry{name: name, size: int64(len(data)), open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}
}

func (s *Server) metadataEntries(r *http.Request, c *compose.Compose) ([]tarEntry, error) {
	lf, err := s.svc.Lockfile(r.Context(), s.owner, c.ID)
	if err != nil {
		return nil, err
	}
	return []tarEntry{bytesEntry(c.ID+".json", lf)}, nil
}

func (s *Server) logEntries(r *http.Request, c *compose.Compose) ([]tarEntry, error) {
	data, err := s.readLog(r.Context(), c)
	if err != nil {
		return nil, err
	}
	return []tarEntry{bytesEntry("logs/osbuild.log", data)}, nil
}

func (s *Server) sendTar(w http.ResponseWriter, r *http.Request, name string, entries []tarEntry, err error) {
	if errors.Is(err, compose.ErrNotFinished) {
		s.fail(w, http.StatusBadRequest, "BuildInWrongState", "Build is not finished")
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	attachment(w, name, "application/x-tar")
	if err := writeTar(w, entries); err != nil {
		s.log.WarnContext(r.Context(), "sending tar", "name", name, "err", err)
	}
}

func (s *Server) composeLogs(w http.ResponseWriter, r *http.Request) {
	c := s.get(w, r, notExist)
	if c == nil || !s.ended(w, c) {
		return
	}
	e, err := s.logEntries(r, c)
	s.sendTar(w, r, c.ID+"-logs.tar", e, err)
}

func (s *Server) composeMetadata(w http.ResponseWriter, r *http.Request) {
	c := s.get(w, r, notExist)
	if c == nil || !s.ended(w, c) {
		return
	}
	e, err := s.metadataEntries(r, c)
	s.sendTar(w, r, c.ID+"-metadata.tar", e, err)
}

func (s *Server) composeResults(w http.ResponseWriter, r *http.Request) {
	c := s.get(w, r, notExist)
	if c == nil || !s.finished(w, c) {
		return
	}
	meta, err := s.metadataEntries(r, c)
	if err != nil {
		s.sendTar(w, r, "", nil, err)
		return
	}
	logs, err := s.logEntries(r, c)
	if err != nil {
		s.sendTar(w, r, "", nil, err)
		return
	}
	entries := append(meta, logs...)
	a := c.Images[0].Artifact
	entries = append(entries, tarEntry{name: c.ID + "-" + path.Base(a.Name), size: a.Size, open: func() (io.ReadCloser, error) {
		rd, _, err := s.svc.Artifact(r.Context(), s.owner, c.ID, 0)
		return rd, err
	}})
	s.sendTar(w, r, c.ID+".tar", entries, nil)
}

func (s *Server) composeDelete(w http.ResponseWriter, r *http.Request) {
	out, errs := []any{}, []apiError{}
	for _, id := range splitNames(r.PathValue("uuids")) {
		err := s.svc.Delete(r.Context(), s.owner, id)
		switch {
		case err == nil:
			out = append(out, map[string]any{"uuid": id, "status": true})
		case errors.Is(err, compose.ErrNotFound):
			errs = append(errs, apiError{"UnknownUUID", fmt.Sprintf("compose %s doesn't exist", id)})
		case errors.Is(err, compose.ErrNotFinished):
			errs = append(errs, apiError{"BuildInWrongState", fmt.Sprintf("Compose %s is not in FINISHED or FAILED.", id)})
		default:
			errs = append(errs, apiError{"ComposeError", fmt.Sprintf("%s: %v", id, err)})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"uuids": out, "errors": errs})
}

func (s *Server) composeCancel(w http.ResponseWriter, r *http.Request) {
	c := s.get(w, r, notExist)
	if c == nil {
		return
	}
	err := s.svc.Cancel(r.Context(), s.owner, c.ID)
	if errors.Is(err, compose.ErrFinished) {
		s.fail(w, http.StatusBadRequest, "BuildInWrongState", fmt.Sprintf("Build %s is not in WAITING or RUNNING.", c.ID))
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"uuid": c.ID, "status": true})
}
