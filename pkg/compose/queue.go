package compose

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	_ "modernc.org/sqlite" // the embedded database
)

// queue is what the service needs of a River client, whichever driver
// (and so transaction type) it was made with.
type queue interface {
	insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (int64, error)
	cancel(ctx context.Context, job int64) error
	start(ctx context.Context) error
	stop(ctx context.Context) error
	stopAndCancel(ctx context.Context) error
}

type riverQueue[TTx any] struct{ c *river.Client[TTx] }

func (q riverQueue[TTx]) insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (int64, error) {
	res, err := q.c.Insert(ctx, args, opts)
	if err != nil {
		return 0, err
	}
	return res.Job.ID, nil
}

func (q riverQueue[TTx]) cancel(ctx context.Context, job int64) error {
	_, err := q.c.JobCancel(ctx, job)
	return err
}

func (q riverQueue[TTx]) start(ctx context.Context) error { return q.c.Start(ctx) }
func (q riverQueue[TTx]) stop(ctx context.Context) error  { return q.c.Stop(ctx) }
func (q riverQueue[TTx]) stopAndCancel(ctx context.Context) error {
	return q.c.StopAndCancel(ctx)
}

func migrateRiver[TTx any](ctx context.Context, d riverdriver.Driver[TTx]) error {
	m, err := rivermigrate.New(d, nil)
	if err != nil {
		return fmt.Errorf("migrating job queue: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrating job queue: %w", err)
	}
	return nil
}

// openQueue opens the database (SQLite file path or postgres:// URL),
// migrates River's tables and returns the client and a database/sql
// handle for the service's own tables.
func openQueue(ctx context.Context, database string, cfg *river.Config) (queue, *sql.DB, *sql.DB, func(), error) {
	if strings.HasPrefix(database, "postgres://") || strings.HasPrefix(database, "postgresql://") {
		pool, err := pgxpool.New(ctx, database)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("opening database: %w", err)
		}
		if err := pool.Ping(ctx); err != nil {
			pool.Close()
			return nil, nil, nil, nil, fmt.Errorf("opening database: %w", err)
		}
		d := riverpgxv5.New(pool)
		if err := migrateRiver(ctx, d); err != nil {
			pool.Close()
			return nil, nil, nil, nil, err
		}
		c, err := river.NewClient(d, cfg)
		if err != nil {
			pool.Close()
			return nil, nil, nil, nil, fmt.Errorf("starting job queue: %w", err)
		}
		sdb := stdlib.OpenDBFromPool(pool)
		return riverQueue[pgx.Tx]{c}, sdb, sdb, func() { sdb.Close(); pool.Close() }, nil
	}
	// SQLite allows one writer: River's own advice is a pool of one
	// connection; the busy timeout covers the service's other handles.
	sdb, err := sql.Open("sqlite", "file:"+database+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)")
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("opening database %s: %w", database, err)
	}
	sdb.SetMaxOpenConns(1)
	d := riversqlite.New(sdb)
	if err := migrateRiver(ctx, d); err != nil {
		sdb.Close()
		return nil, nil, nil, nil, err
	}
	c, err := river.NewClient(d, cfg)
	if err != nil {
		sdb.Close()
		return nil, nil, nil, nil, fmt.Errorf("starting job queue: %w", err)
	}
	// Reads of the service's own records (status polls) go through a
	// pool of their own: WAL lets them run beside the one writer.
	rdb, err := sql.Open("sqlite", "file:"+database+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		sdb.Close()
		return nil, nil, nil, nil, fmt.Errorf("opening database %s: %w", database, err)
	}
	rdb.SetMaxOpenConns(8)
	return riverQueue[*sql.Tx]{c}, sdb, rdb, func() { rdb.Close(); sdb.Close() }, nil
}
