// Package serve runs the compose service as one process: the compose
// core (pkg/compose) with its workers, composer's weldr API on a unix
// socket (pkg/weldr), and an HTTP listener on loopback for /metrics and
// whatever the front ends mount on it (the cloud API, the web page).
// `ibuild serve` and `ibuild worker` are thin commands over Run and
// RunWorker.
package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/user"
	"path/filepath"
	"time"

	"github.com/image-builder-action/image-builder-action/pkg/compose"
	"github.com/image-builder-action/image-builder-action/pkg/weldr"
)

// DefaultDir is where the service keeps its state when run as root.
const DefaultDir = "/var/lib/ibuild"

// DefaultListen is the HTTP listener's default address.
const DefaultListen = "127.0.0.1:8700"

// Env is what a Mount gets to build its handler on.
type Env struct {
	Compose    *compose.Service
	Blueprints *weldr.Store
	Logger     *slog.Logger
	// Dir is the service's state directory (a mount may keep its own
	// state under it, in a directory named for itself).
	Dir string
}

// Mount adds a handler to the HTTP listener under pattern (a ServeMux
// pattern such as "/api/image-builder-composer/v2/"). The cloud API and
// the web page are mounts.
type Mount func(ctx context.Context, env *Env) (pattern string, h http.Handler, err error)

// Options configure Run.
type Options struct {
	// Compose configures the core; its Dir defaults to DefaultDir.
	Compose compose.Config
	// Socket is the weldr API's unix socket (default weldr.DefaultSocket;
	// "none" serves no socket). SocketGroup may use it besides root
	// (default "weldr" when that group exists).
	Socket, SocketGroup string
	// Listen is the HTTP address (default DefaultListen; "none" serves
	// no HTTP). An address that is not loopback needs TLSCert and TLSKey.
	Listen          string
	TLSCert, TLSKey string
	Mounts          []Mount
	// Drain is how long a shutdown waits for running builds before
	// cancelling them (default 5 minutes); the queue retries them later.
	Drain time.Duration
	// Ready is called with the addresses served once everything listens.
	Ready  func(Addresses)
	Logger *slog.Logger
}

// Addresses are what Run serves.
type Addresses struct {
	Socket string
	// HTTP is the listener's base URL ("http://127.0.0.1:8700/").
	HTTP string
}

func loopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

// Run serves until ctx ends, then shuts down gracefully: listeners stop,
// running builds get Drain to finish, the database is closed.
func Run(ctx context.Context, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Compose.Dir == "" {
		o.Compose.Dir = DefaultDir
	}
	if o.Compose.Logger == nil {
		o.Compose.Logger = log
	}
	if o.Socket == "" {
		o.Socket = weldr.DefaultSocket
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.SocketGroup == "" {
		if _, err := user.LookupGroup("weldr"); err == nil {
			o.SocketGroup = "weldr"
		}
	}
	if o.Drain == 0 {
		o.Drain = 5 * time.Minute
	}
	var tlsCfg *tls.Config
	if o.Listen != "none" {
		lo, err := loopback(o.Listen)
		if err != nil {
			return err
		}
		if o.TLSCert != "" || o.TLSKey != "" {
			cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
			if err != nil {
				return fmt.Errorf("loading TLS certificate: %w", err)
			}
			tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		} else if !lo {
			return fmt.Errorf("listen address %s is not loopback: give a TLS certificate and key", o.Listen)
		}
	}

	svc, err := compose.Open(ctx, o.Compose)
	if err != nil {
		return err
	}
	closeSvc := func() error {
		dctx, cancel := context.WithTimeout(context.Background(), o.Drain)
		defer cancel()
		return svc.Close(dctx)
	}
	store, err := weldr.NewStore(filepath.Join(o.Compose.Dir, "blueprints"))
	if err != nil {
		closeSvc()
		return err
	}
	env := &Env{Compose: svc, Blueprints: store, Logger: log, Dir: o.Compose.Dir}
	var (
		servers []*http.Server
		addrs   Addresses
		errs    = make(chan error, 2)
	)
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, s := range servers {
			_ = s.Shutdown(sctx)
		}
	}
	if o.Socket != "none" {
		l, err := weldr.Listen(o.Socket, o.SocketGroup)
		if err != nil {
			closeSvc()
			return err
		}
		s := &http.Server{Handler: weldr.New(svc, store, weldr.WithLogger(log)), ReadHeaderTimeout: 30 * time.Second}
		servers = append(servers, s)
		addrs.Socket = o.Socket
		go func() { errs <- s.Serve(l) }()
	}
	if o.Listen != "none" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", svc.MetricsHandler())
		for _, m := range o.Mounts {
			pattern, h, err := m(ctx, env)
			if err != nil {
				stop()
				closeSvc()
				return err
			}
			mux.Handle(pattern, h)
		}
		l, err := net.Listen("tcp", o.Listen)
		if err != nil {
			stop()
			closeSvc()
			return fmt.Errorf("listening on %s: %w", o.Listen, err)
		}
		scheme := "http"
		if tlsCfg != nil {
			l, scheme = tls.NewListener(l, tlsCfg), "https"
		}
		s := &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
		servers = append(servers, s)
		addrs.HTTP = fmt.Sprintf("%s://%s/", scheme, l.Addr())
		go func() { errs <- s.Serve(l) }()
	}
	if o.Ready != nil {
		o.Ready(addrs)
	}
	log.InfoContext(ctx, "serving", "socket", addrs.Socket, "http", addrs.HTTP, "workers", o.Compose.Workers)
	select {
	case <-ctx.Done():
		err = nil
	case err = <-errs:
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	}
	log.Info("shutting down: draining running builds", "drain", o.Drain)
	stop()
	if cerr := closeSvc(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// WorkerOptions configure RunWorker.
type WorkerOptions struct {
	// Compose must name a shared Database (postgres://…) and an
	// ArtifactStore every API node reads.
	Compose compose.Config
	// Metrics, when set, serves /metrics on that (loopback) address.
	Metrics string
	Drain   time.Duration
	Ready   func(metricsURL string)
	Logger  *slog.Logger
}

// RunWorker works the queues of its architectures until ctx ends, then
// drains as Run does.
func RunWorker(ctx context.Context, o WorkerOptions) error {
	if o.Compose.Database == "" {
		return errors.New("worker: a shared database is needed (--database postgres://…)")
	}
	if o.Compose.Workers == 0 {
		o.Compose.Workers = 1
	}
	if o.Compose.Logger == nil {
		o.Compose.Logger = o.Logger
	}
	if o.Drain == 0 {
		o.Drain = 5 * time.Minute
	}
	svc, err := compose.Open(ctx, o.Compose)
	if err != nil {
		return err
	}
	var srv *http.Server
	url := ""
	if o.Metrics != "" {
		if lo, err := loopback(o.Metrics); err != nil || !lo {
			svc.Close(context.Background())
			return fmt.Errorf("metrics address %s must be loopback", o.Metrics)
		}
		l, err := net.Listen("tcp", o.Metrics)
		if err != nil {
			svc.Close(context.Background())
			return fmt.Errorf("listening on %s: %w", o.Metrics, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", svc.MetricsHandler())
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
		url = fmt.Sprintf("http://%s/metrics", l.Addr())
		go srv.Serve(l)
	}
	if o.Ready != nil {
		o.Ready(url)
	}
	<-ctx.Done()
	if srv != nil {
		srv.Close()
	}
	dctx, cancel := context.WithTimeout(context.Background(), o.Drain)
	defer cancel()
	return svc.Close(dctx)
}
