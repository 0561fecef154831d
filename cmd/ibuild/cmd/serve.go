package cmd

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/image-builder-action/image-builder-action/pkg/compose"
	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/serve"
)

// httpMounts are the handlers `ibuild serve` mounts on its HTTP listener
// besides /metrics: the cloud API and the web page add themselves here
// (each from a file of its own, in an init function).
var httpMounts []serve.Mount

// composeFlags are the flags serve and worker share.
type composeFlags struct {
	dir, database, artifacts, cache string
	workers                         int
	arches, allowSchemes, publishTo []string
	signKey                         string
	jobTimeout, rescueAfter, drain  time.Duration
	binfmt                          bool
}

func (f *composeFlags) add(fl *pflag.FlagSet, dir string, workers int) {
	fl.StringVar(&f.dir, "dir", dir, "state directory (database, artifacts, cache, work areas)")
	fl.StringVar(&f.database, "database", "", "postgres://… URL of a database shared with workers (default: SQLite in --dir)")
	fl.StringVar(&f.artifacts, "artifacts", "", "where images and logs go, shared by every node: a directory, or s3://BUCKET[/PREFIX][?endpoint=URL&region=R] (default: DIR/artifacts)")
	fl.StringVar(&f.cache, "cache", "", "package and tree cache (default: DIR/cache)")
	fl.IntVar(&f.workers, "workers", workers, "builds run at once per architecture in this process")
	fl.StringSliceVar(&f.arches, "arch", nil, "architectures whose queues this process works (default: the host's)")
	fl.StringSliceVar(&f.allowSchemes, "allow-scheme", nil, "URL schemes requests' repositories may use besides http and https (file reads this machine's disk)")
	fl.DurationVar(&f.jobTimeout, "job-timeout", 2*time.Hour, "longest time one build may take")
	fl.DurationVar(&f.rescueAfter, "rescue-after", 0, "retry a build whose worker died after this long (default: job timeout + 10m)")
	fl.DurationVar(&f.drain, "drain", 5*time.Minute, "on shutdown, how long running builds may finish before they are cancelled (and retried later)")
	fl.StringSliceVar(&f.publishTo, "publish-to", nil, "registries (HOST[:PORT]) or repository prefixes (HOST/PATH) requests may publish images to, with this machine's registry credentials (default: none)")
	fl.StringVar(&f.signKey, "sign-key", "", "cosign private key that signs what requests publish (password from COSIGN_PASSWORD; default: no signing)")
	fl.BoolVar(&f.binfmt, "register-binfmt", true, "register qemu-user's binfmt_misc handler for builds of another architecture")
}

func (f *composeFlags) config(log *slog.Logger) compose.Config {
	cfg := compose.Config{
		Dir: f.dir, Database: f.database, CacheDir: f.cache, Workers: f.workers, Arches: f.arches,
		AllowSchemes: f.allowSchemes, JobTimeout: f.jobTimeout, RescueAfter: f.rescueAfter,
		RegisterBinfmt: f.binfmt, Logger: log, Artifacts: f.artifacts,
		Publish: compose.PublishConfig{Repositories: f.publishTo},
	}
	if f.signKey != "" {
		cfg.Publish.Sign = ibuild.SignRequest{Mode: ibuild.SignKey, Key: f.signKey, Password: func() ([]byte, error) {
			// A service has no terminal to ask on.
			pw, ok := os.LookupEnv("COSIGN_PASSWORD")
			if !ok {
				return nil, errors.New("--sign-key: set COSIGN_PASSWORD (empty for a key without one)")
			}
			return []byte(pw), nil
		}}
	}
	return cfg
}

func serviceLogger(c *cobra.Command) *slog.Logger {
	return slog.New(slog.NewTextHandler(c.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func newServe() *cobra.Command {
	var (
		f                     composeFlags
		socket, group, listen string
		tlsCert, tlsKey       string
	)
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the compose service: composer's weldr API, the cloud API and the web page",
		Long: `Serve runs a whole compose service in one process: composer's weldr API on a
unix socket (what composer-cli speaks), an HTTP listener on loopback (the
cloud API, the web page, /metrics), the job queue in a SQLite database
under --dir and builds in this process.

To scale out, give every node the same --database postgres://… and
--artifacts store (s3://BUCKET[/PREFIX], or a directory all of them
mount), and run 'ibuild worker' on the build machines (serve --workers 0
then only queues and serves).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			log := serviceLogger(c)
			return serve.Run(c.Context(), serve.Options{
				Compose: f.config(log), Socket: socket, SocketGroup: group, Listen: listen,
				TLSCert: tlsCert, TLSKey: tlsKey, Mounts: httpMounts, Drain: f.drain, Logger: log,
				Ready: func(a serve.Addresses) {
					if a.Socket != "" {
						fmt.Fprintf(c.OutOrStdout(), "weldr API: %s\n", a.Socket)
					}
					if a.HTTP != "" {
						fmt.Fprintf(c.OutOrStdout(), "HTTP: %s\nmetrics: %smetrics\n", a.HTTP, a.HTTP)
					}
				},
			})
		},
	}
	fl := c.Flags()
	f.add(fl, serve.DefaultDir, 1)
	fl.StringVar(&socket, "socket", "", "weldr API socket (default /run/weldr/api.socket; none: no socket)")
	fl.StringVar(&group, "socket-group", "", "group allowed on the socket besides root (default: weldr, when it exists)")
	fl.StringVar(&listen, "listen", serve.DefaultListen, "HTTP address (loopback unless --tls-cert and --tls-key; none: no HTTP)")
	fl.StringVar(&tlsCert, "tls-cert", "", "TLS certificate for the HTTP listener")
	fl.StringVar(&tlsKey, "tls-key", "", "TLS key for the HTTP listener")
	addCloudAPIFlags(fl)
	c.AddCommand(newToken())
	return c
}

func newWorker() *cobra.Command {
	var (
		f       composeFlags
		metrics string
	)
	c := &cobra.Command{
		Use:   "worker --database postgres://… --artifacts s3://BUCKET|DIR",
		Short: "Work the compose service's build queues from another machine",
		Long: `Worker takes lock and build jobs from the queues of its architectures in the
shared PostgreSQL database and puts what it builds into the shared
artifact store; while it builds, it appends the build's log to the
database, where every API node reads it. Stopping it (SIGTERM) lets running builds finish for
--drain; a worker killed outright has its build retried by the queue
after --rescue-after.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			log := serviceLogger(c)
			return serve.RunWorker(c.Context(), serve.WorkerOptions{
				Compose: f.config(log), Metrics: metrics, Drain: f.drain, Logger: log,
				Ready: func(url string) {
					fmt.Fprintf(c.OutOrStdout(), "worker: queues %v\n", queues(f.arches))
					if url != "" {
						fmt.Fprintf(c.OutOrStdout(), "metrics: %s\n", url)
					}
				},
			})
		},
	}
	fl := c.Flags()
	f.add(fl, filepath.Join(serve.DefaultDir, "worker"), 1)
	fl.StringVar(&metrics, "metrics", "", "serve /metrics on this loopback address")
	return c
}

func queues(arches []string) []string {
	if len(arches) == 0 {
		arches = []string{compose.HostArch()}
	}
	out := []string{"lock"}
	for _, a := range arches {
		out = append(out, compose.BuildQueue(a))
	}
	return out
}
