package weldr

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Client speaks the weldr API over a unix socket, as composer-cli does:
// what the service's tests drive, and a small client for scripts.
type Client struct {
	http *http.Client
}

// NewClient returns a client of the API on the unix socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	},
		// A client shared by many goroutines (the bench has 200) keeps
		// their connections instead of dialling anew for all but a few
		// (the default keeps two).
		MaxIdleConnsPerHost: 256,
	}
	return &Client{http: &http.Client{Transport: tr}}
}

// APIError is composer's error envelope, with the HTTP status.
type APIError struct {
	Code   int
	Errors []struct {
		ID  string `json:"id"`
		Msg string `json:"msg"`
	} `json:"errors"`
}

func (e *APIError) Error() string {
	var parts []string
	for _, x := range e.Errors {
		parts = append(parts, x.ID+": "+x.Msg)
	}
	return fmt.Sprintf("weldr API: %d: %s", e.Code, strings.Join(parts, "; "))
}

// HasID says whether the error carries the id.
func (e *APIError) HasID(id string) bool {
	for _, x := range e.Errors {
		if x.ID == id {
			return true
		}
	}
	return false
}

// Do sends a request to route (under /api/v1 unless it starts with
// /api/) and returns the response for 2xx, *APIError otherwise.
func (c *Client) Do(ctx context.Context, method, route, ctype string, body []byte) (*http.Response, error) {
	if !strings.HasPrefix(route, "/api/") {
		route = "/api/v1" + route
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+route, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		e := &APIError{Code: resp.StatusCode}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err := json.Unmarshal(data, e); err != nil {
			return nil, fmt.Errorf("weldr API: %d: %s", resp.StatusCode, data)
		}
		return nil, e
	}
	return resp, nil
}

// JSON sends a request and decodes the JSON answer into out (if not nil).
func (c *Client) JSON(ctx context.Context, method, route, ctype string, body []byte, out any) error {
	resp, err := c.Do(ctx, method, route, ctype, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// PushTOML pushes a blueprint in TOML, as `composer-cli blueprints push`.
func (c *Client) PushTOML(ctx context.Context, bp []byte) error {
	return c.JSON(ctx, "POST", "/blueprints/new", "text/x-toml", bp, nil)
}

// ComposeStatus is one compose as the queue, finished, failed and status
// routes list it.
type ComposeStatus struct {
	ID          string   `json:"id"`
	Blueprint   string   `json:"blueprint"`
	Version     string   `json:"version"`
	Type        string   `json:"compose_type"`
	Size        int64    `json:"image_size"`
	Status      string   `json:"queue_status"`
	JobCreated  float64  `json:"job_created"`
	JobStarted  *float64 `json:"job_started"`
	JobFinished *float64 `json:"job_finished"`
}

// StartCompose starts a compose of a stored blueprint, as
// `composer-cli compose start NAME TYPE`, and returns its id.
func (c *Client) StartCompose(ctx context.Context, name, typ string, size uint64) (string, error) {
	body, _ := json.Marshal(map[string]any{"blueprint_name": name, "compose_type": typ, "branch": "master", "size": size})
	var out struct {
		ID string `json:"build_id"`
	}
	if err := c.JSON(ctx, "POST", "/compose", "application/json", body, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}

// StartComposeUpload starts a compose whose image goes to a cloud
// target, as `composer-cli compose start NAME TYPE IMAGE-NAME
// PROFILE.toml` does: profile is the TOML of an upload profile, a
// provider and its [settings].
func (c *Client) StartComposeUpload(ctx context.Context, name, typ, imageName string, profile []byte) (string, error) {
	var p struct {
		Provider string         `toml:"provider"`
		Settings map[string]any `toml:"settings"`
	}
	dec := toml.NewDecoder(bytes.NewReader(profile))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return "", fmt.Errorf("reading upload profile: %w", err)
	}
	body, err := json.Marshal(map[string]any{"blueprint_name": name, "compose_type": typ, "branch": "master",
		"upload": map[string]any{"image_name": imageName, "provider": p.Provider, "settings": p.Settings}})
	if err != nil {
		return "", err
	}
	var out struct {
		ID string `json:"build_id"`
	}
	if err := c.JSON(ctx, "POST", "/compose", "application/json", body, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}

// List returns every compose as `composer-cli compose list`: the
// queue's, the finished and the failed ones.
func (c *Client) List(ctx context.Context) ([]ComposeStatus, error) {
	var q struct{ New, Run []ComposeStatus }
	if err := c.JSON(ctx, "GET", "/compose/queue", "", nil, &q); err != nil {
		return nil, err
	}
	var f struct{ Finished []ComposeStatus }
	if err := c.JSON(ctx, "GET", "/compose/finished", "", nil, &f); err != nil {
		return nil, err
	}
	var x struct{ Failed []ComposeStatus }
	if err := c.JSON(ctx, "GET", "/compose/failed", "", nil, &x); err != nil {
		return nil, err
	}
	return append(append(append(q.New, q.Run...), f.Finished...), x.Failed...), nil
}

// GetFile downloads route into path and returns the file name the
// Content-Disposition header gives.
func (c *Client) GetFile(ctx context.Context, route, path string) (string, error) {
	resp, err := c.Do(ctx, "GET", route, "", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition"))
	if err != nil {
		return "", fmt.Errorf("content-disposition: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return "", err
	}
	return params["filename"], f.Close()
}
