package compose

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The service's own tables sit beside River's in the same database. The
// SQL is the subset SQLite and PostgreSQL share ($n placeholders, TEXT
// and BIGINT); records are JSON in a TEXT column so a new field needs no
// migration.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS ibuild_compose (
		id TEXT PRIMARY KEY,
		owner TEXT NOT NULL,
		created BIGINT NOT NULL,
		status TEXT NOT NULL,
		record TEXT NOT NULL,
		blueprint TEXT NOT NULL,
		lockfile TEXT NOT NULL DEFAULT ''
	)`,
	`CREATE INDEX IF NOT EXISTS ibuild_compose_owner ON ibuild_compose (owner, created)`,
	`CREATE TABLE IF NOT EXISTS ibuild_image (
		compose_id TEXT NOT NULL,
		idx INTEGER NOT NULL,
		job_id BIGINT NOT NULL DEFAULT 0,
		record TEXT NOT NULL,
		PRIMARY KEY (compose_id, idx)
	)`,
	// The log of a build in progress, in chunks a worker appends while
	// it builds, so an API node on another machine shows it live; the
	// whole log goes to the artifact store at the end.
	`CREATE TABLE IF NOT EXISTS ibuild_log (
		compose_id TEXT NOT NULL,
		idx INTEGER NOT NULL,
		seq INTEGER NOT NULL,
		chunk TEXT NOT NULL,
		PRIMARY KEY (compose_id, idx, seq)
	)`,
}

func migrate(ctx context.Context, db *sql.DB) error {
	for _, s := range schema {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("creating tables: %w", err)
		}
	}
	return nil
}

// composeRow is the compose table's record: what is set at submit and by
// the lock job. Images are rows of their own so that builds of one
// compose on different workers never write the same row.
type composeRow struct {
	Request          Request    `json:"request"`
	BlueprintName    string     `json:"blueprint_name"`
	BlueprintVersion string     `json:"blueprint_version,omitempty"`
	BlueprintFile    string     `json:"blueprint_file"`
	Distro           string     `json:"distro,omitempty"`
	Started          *time.Time `json:"started,omitempty"`
	LockedAt         *time.Time `json:"locked_at,omitempty"`
	LockfileDigest   string     `json:"lockfile_digest,omitempty"`
	LockJobID        int64      `json:"lock_job_id,omitempty"`
	Error            string     `json:"error,omitempty"`
	Cancelled        bool       `json:"cancelled,omitempty"`
	Failed           bool       `json:"failed,omitempty"`
}

type db struct {
	sql *sql.DB
	// read serves load and ids (the same handle on PostgreSQL).
	read *sql.DB
	// view serves API reads from memory; every write below drops the
	// compose from it.
	view *view
}

// cached is the compose as load reads it, from the view when it holds
// it. For API reads only: jobs read the rows themselves.
func (d *db) cached(ctx context.Context, id string) (*loaded, error) {
	return d.view.get(ctx, id, d.load)
}

func (d *db) insertCompose(ctx context.Context, id, owner string, created time.Time, row *composeRow, bp []byte, images []ImageStatus) error {
	rec, err := json.Marshal(row)
	if err != nil {
		return err
	}
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("storing compose %s: %w", id, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO ibuild_compose (id, owner, created, status, record, blueprint) VALUES ($1, $2, $3, $4, $5, $6)`,
		id, owner, created.UnixNano(), string(StatusPending), string(rec), string(bp)); err != nil {
		return fmt.Errorf("storing compose %s: %w", id, err)
	}
	for i, im := range images {
		r, err := json.Marshal(im)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO ibuild_image (compose_id, idx, record) VALUES ($1, $2, $3)`, id, i, string(r)); err != nil {
			return fmt.Errorf("storing compose %s: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("storing compose %s: %w", id, err)
	}
	return nil
}

// loaded is a compose as stored.
type loaded struct {
	id, owner string
	created   time.Time
	status    Status
	row       composeRow
	images    []ImageStatus
	jobIDs    []int64
}

func (d *db) load(ctx context.Context, id string) (*loaded, error) {
	var (
		l       loaded
		created int64
		rec     string
		status  string
	)
	err := d.read.QueryRowContext(ctx, `SELECT id, owner, created, status, record FROM ibuild_compose WHERE id = $1`, id).
		Scan(&l.id, &l.owner, &created, &status, &rec)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading compose %s: %w", id, err)
	}
	l.created, l.status = time.Unix(0, created).UTC(), Status(status)
	if err := json.Unmarshal([]byte(rec), &l.row); err != nil {
		return nil, fmt.Errorf("reading compose %s: %w", id, err)
	}
	rows, err := d.read.QueryContext(ctx, `SELECT job_id, record FROM ibuild_image WHERE compose_id = $1 ORDER BY idx`, id)
	if err != nil {
		return nil, fmt.Errorf("reading compose %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			job int64
			r   string
			im  ImageStatus
		)
		if err := rows.Scan(&job, &r); err != nil {
			return nil, fmt.Errorf("reading compose %s: %w", id, err)
		}
		if err := json.Unmarshal([]byte(r), &im); err != nil {
			return nil, fmt.Errorf("reading compose %s: %w", id, err)
		}
		l.images = append(l.images, im)
		l.jobIDs = append(l.jobIDs, job)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading compose %s: %w", id, err)
	}
	return &l, nil
}

func (d *db) blueprintAndLockfile(ctx context.Context, id string) (bp, lf []byte, err error) {
	var b, l string
	err = d.sql.QueryRowContext(ctx, `SELECT blueprint, lockfile FROM ibuild_compose WHERE id = $1`, id).Scan(&b, &l)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading compose %s: %w", id, err)
	}
	return []byte(b), []byte(l), nil
}

func (d *db) updateCompose(ctx context.Context, id string, status Status, row *composeRow) error {
	defer d.view.drop(id)
	rec, err := json.Marshal(row)
	if err != nil {
		return err
	}
	if _, err := d.sql.ExecContext(ctx, `UPDATE ibuild_compose SET status = $1, record = $2 WHERE id = $3`, string(status), string(rec), id); err != nil {
		return fmt.Errorf("updating compose %s: %w", id, err)
	}
	return nil
}

func (d *db) setLockfile(ctx context.Context, id string, row *composeRow, lockfile []byte) error {
	defer d.view.drop(id)
	rec, err := json.Marshal(row)
	if err != nil {
		return err
	}
	if _, err := d.sql.ExecContext(ctx, `UPDATE ibuild_compose SET status = $1, record = $2, lockfile = $3 WHERE id = $4`,
		string(StatusBuilding), string(rec), string(lockfile), id); err != nil {
		return fmt.Errorf("updating compose %s: %w", id, err)
	}
	return nil
}

func (d *db) setStatus(ctx context.Context, id string, status Status) error {
	defer d.view.drop(id)
	if _, err := d.sql.ExecContext(ctx, `UPDATE ibuild_compose SET status = $1 WHERE id = $2`, string(status), id); err != nil {
		return fmt.Errorf("updating compose %s: %w", id, err)
	}
	return nil
}

func (d *db) updateImage(ctx context.Context, id string, idx int, im *ImageStatus) error {
	defer d.view.drop(id)
	r, err := json.Marshal(im)
	if err != nil {
		return err
	}
	if _, err := d.sql.ExecContext(ctx, `UPDATE ibuild_image SET record = $1 WHERE compose_id = $2 AND idx = $3`, string(r), id, idx); err != nil {
		return fmt.Errorf("updating compose %s image %d: %w", id, idx, err)
	}
	return nil
}

func (d *db) setImageJob(ctx context.Context, id string, idx int, job int64) error {
	defer d.view.drop(id)
	if _, err := d.sql.ExecContext(ctx, `UPDATE ibuild_image SET job_id = $1 WHERE compose_id = $2 AND idx = $3`, job, id, idx); err != nil {
		return fmt.Errorf("updating compose %s image %d: %w", id, idx, err)
	}
	return nil
}

func (d *db) image(ctx context.Context, id string, idx int) (*ImageStatus, error) {
	var r string
	err := d.sql.QueryRowContext(ctx, `SELECT record FROM ibuild_image WHERE compose_id = $1 AND idx = $2`, id, idx).Scan(&r)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading compose %s image %d: %w", id, idx, err)
	}
	var im ImageStatus
	if err := json.Unmarshal([]byte(r), &im); err != nil {
		return nil, fmt.Errorf("reading compose %s image %d: %w", id, idx, err)
	}
	return &im, nil
}

// ids lists an owner's compose ids, newest first ("" owner: everyone's,
// for the service's own sweeps).
func (d *db) ids(ctx context.Context, owner string, statuses []Status, limit, offset int) ([]string, error) {
	q := `SELECT id FROM ibuild_compose WHERE 1 = 1`
	var args []any
	if owner != "" {
		args = append(args, owner)
		q += fmt.Sprintf(` AND owner = $%d`, len(args))
	}
	if len(statuses) > 0 {
		var ph []string
		for _, s := range statuses {
			args = append(args, string(s))
			ph = append(ph, fmt.Sprintf("$%d", len(args)))
		}
		q += ` AND status IN (` + strings.Join(ph, ", ") + `)`
	}
	q += ` ORDER BY created DESC, id`
	if limit > 0 {
		q += fmt.Sprintf(` LIMIT %d OFFSET %d`, limit, offset)
	} else if offset > 0 {
		// Both dialects accept a large LIMIT where none is meant.
		q += fmt.Sprintf(` LIMIT %d OFFSET %d`, int64(1)<<62, offset)
	}
	rows, err := d.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing composes: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("listing composes: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

func (d *db) count(ctx context.Context, owner string, statuses []Status) (int, error) {
	ids, err := d.ids(ctx, owner, statuses, 0, 0)
	return len(ids), err
}

func (d *db) deleteCompose(ctx context.Context, id string) error {
	defer d.view.drop(id)
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("deleting compose %s: %w", id, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM ibuild_image WHERE compose_id = $1`, id); err != nil {
		return fmt.Errorf("deleting compose %s: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM ibuild_log WHERE compose_id = $1`, id); err != nil {
		return fmt.Errorf("deleting compose %s: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM ibuild_compose WHERE id = $1`, id); err != nil {
		return fmt.Errorf("deleting compose %s: %w", id, err)
	}
	return tx.Commit()
}

// queueDepth counts River's jobs waiting per queue.
func (d *db) queueDepth(ctx context.Context) (map[string]int, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT queue, count(*) FROM river_job WHERE state IN ('available', 'scheduled', 'retryable') GROUP BY queue`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var (
			q string
			n int
		)
		if err := rows.Scan(&q, &n); err != nil {
			return nil, err
		}
		out[q] = n
	}
	return out, rows.Err()
}

// jobState is River's state of a job ("" when the job is gone).
func (d *db) jobState(ctx context.Context, job int64) (string, error) {
	var s string
	err := d.sql.QueryRowContext(ctx, `SELECT state FROM river_job WHERE id = $1`, job).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return s, err
}

// appendLog adds a chunk of an image's live log. Chunks are text: both
// databases' TEXT wants valid UTF-8 (PostgreSQL refuses NUL too). A chunk
// whose seq is there already is not added again: an insert that committed
// but reported an error (a timeout) is then retried without a key error
// that would stop the log for good.
func (d *db) appendLog(ctx context.Context, id string, idx, seq int, chunk []byte) error {
	text := strings.ToValidUTF8(strings.ReplaceAll(string(chunk), "\x00", ""), "\uFFFD")
	if _, err := d.sql.ExecContext(ctx, `INSERT INTO ibuild_log (compose_id, idx, seq, chunk) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, id, idx, seq, text); err != nil {
		return fmt.Errorf("appending to the log of compose %s image %d: %w", id, idx, err)
	}
	return nil
}

// liveLog is the chunks of an image's log appended so far.
func (d *db) liveLog(ctx context.Context, id string, idx int) ([]byte, error) {
	rows, err := d.read.QueryContext(ctx, `SELECT chunk FROM ibuild_log WHERE compose_id = $1 AND idx = $2 ORDER BY seq`, id, idx)
	if err != nil {
		return nil, fmt.Errorf("reading the log of compose %s image %d: %w", id, idx, err)
	}
	defer rows.Close()
	var out []byte
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("reading the log of compose %s image %d: %w", id, idx, err)
		}
		out = append(out, c...)
	}
	return out, rows.Err()
}

// deleteLog removes an image's live log (a new attempt starts one; the
// store has the whole log once the build ended).
func (d *db) deleteLog(ctx context.Context, id string, idx int) error {
	if _, err := d.sql.ExecContext(ctx, `DELETE FROM ibuild_log WHERE compose_id = $1 AND idx = $2`, id, idx); err != nil {
		return fmt.Errorf("deleting the log of compose %s image %d: %w", id, idx, err)
	}
	return nil
}
