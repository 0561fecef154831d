// Package action is the entrypoint of the GitHub Action (`ibuild action`):
// it reads the action's inputs, makes one library call (lock, check,
// matrix, build or publish) and reports in GitHub's terms: step outputs,
// a step summary, annotations on the blueprint or lockfile, masked
// secrets and a log group per stage.
//
// It adds no logic of its own beyond GitHub's conventions. Outputs and
// environment variables are written with a random heredoc delimiter (see
// FileCommands), and text that comes from outside — package metadata, the
// output of the tools a build runs — is logged with workflow commands
// stopped, so neither can set outputs or variables.
package action

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sethvargo/go-githubactions"

	"github.com/image-builder-action/image-builder-action/pkg/build"
	"github.com/image-builder-action/image-builder-action/pkg/ibuild"
	"github.com/image-builder-action/image-builder-action/pkg/lock"
	"github.com/image-builder-action/image-builder-action/pkg/publish"
	"github.com/image-builder-action/image-builder-action/pkg/upload"
)

// The commands the action runs (the "command" input).
const (
	CommandLock    = "lock"
	CommandCheck   = "check"
	CommandMatrix  = "matrix"
	CommandBuild   = "build"
	CommandPublish = "publish"
	CommandMirror  = "mirror"
	CommandUpload  = "upload"
)

// Commands lists the valid values of the "command" input.
var Commands = []string{CommandLock, CommandCheck, CommandMatrix, CommandBuild, CommandPublish, CommandMirror, CommandUpload}

// Inputs are the action's inputs (action.yml), read from INPUT_*
// variables. Paths are relative to GITHUB_WORKSPACE.
type Inputs struct {
	Command   string
	Blueprint string
	// Lockfile defaults to the blueprint's path with ".lock.json".
	Lockfile string
	Distro   string
	Arches   []string
	Types    []string
	// OutputDir is where build writes images and publish finds them.
	OutputDir string
	CacheDir  string
	// Ref is the OCI repository publish pushes to; Tags its tags.
	Ref  string
	Tags []string
	Sign bool
	// CosignKey is a private key (PEM) or a reference to one; empty with
	// Sign means keyless signing with the workflow's OIDC identity.
	CosignKey      string
	CosignPassword string
	GitHubToken    string
	// Sources are the stores build takes packages from when the mirror
	// and the snapshot archive do not serve them; To is the store mirror
	// fills.
	Sources []string
	To      string
	// Target is the cloud upload uploads to (aws, aws.s3, gcp, azure);
	// Upload its options, from the inputs of the same names.
	Target string
	Upload upload.Options
	// Targets are the clouds publish uploads to besides (or instead of)
	// the registry.
	Targets []string
}

// ReadInputs reads the inputs. An input named "output-dir" is read from
// INPUT_OUTPUT-DIR (what the runner sets for JavaScript and Docker
// actions) or, failing that, INPUT_OUTPUT_DIR (what a composite action can
// set, since shells cannot name the former).
func ReadInputs(getenv func(string) string) (*Inputs, error) {
	get := func(name string) string { return input(getenv, name) }
	in := &Inputs{
		Command:        get("command"),
		Blueprint:      get("blueprint"),
		Lockfile:       get("lockfile"),
		Distro:         get("distro"),
		Arches:         list(get("arches")),
		Types:          list(get("types")),
		OutputDir:      get("output-dir"),
		CacheDir:       get("cache-dir"),
		Ref:            get("ref"),
		Tags:           list(get("tags")),
		CosignKey:      getenv(inputVar("cosign-key")),
		CosignPassword: getenv(inputVar("cosign-password")),
		GitHubToken:    get("github-token"),
		Sources:        list(get("sources")),
		To:             get("to"),
		Target:         get("target"),
		Targets:        list(get("targets")),
		Upload: upload.Options{
			Region: get("region"), Bucket: get("bucket"), Prefix: get("prefix"), Endpoint: get("endpoint"),
			ShareWithAccounts: list(get("share-with-accounts")), BootMode: get("boot-mode"),
			Project: get("project"), Family: get("family"),
			SubscriptionID: get("subscription-id"), ResourceGroup: get("resource-group"), Location: get("location"),
			StorageAccount: get("storage-account"), Container: get("container"), HyperVGeneration: get("hyper-v-generation"),
		},
	}
	if in.CosignKey == "" {
		in.CosignKey = getenv(strings.ReplaceAll(inputVar("cosign-key"), "-", "_"))
	}
	if in.CosignPassword == "" {
		in.CosignPassword = getenv(strings.ReplaceAll(inputVar("cosign-password"), "-", "_"))
	}
	in.CosignKey = strings.TrimSpace(in.CosignKey)
	if in.Command == "" {
		return nil, fmt.Errorf("input command: required (one of %s)", strings.Join(Commands, ", "))
	}
	known := false
	for _, c := range Commands {
		known = known || in.Command == c
	}
	if !known {
		return nil, fmt.Errorf("input command: %q is not one of %s", in.Command, strings.Join(Commands, ", "))
	}
	sign, err := parseBool(get("sign"))
	if err != nil {
		return nil, fmt.Errorf("input sign: %w", err)
	}
	in.Sign = sign
	if in.Upload.Public, err = parseBool(get("public")); err != nil {
		return nil, fmt.Errorf("input public: %w", err)
	}
	if in.Upload.Expires, err = parseExpires(get("expires")); err != nil {
		return nil, fmt.Errorf("input expires: %w", err)
	}
	if in.OutputDir == "" {
		in.OutputDir = "out"
	}
	return in, nil
}

func inputVar(name string) string {
	return "INPUT_" + strings.ToUpper(strings.ReplaceAll(name, " ", "_"))
}

// input reads one input, trimmed, in either spelling.
func input(getenv func(string) string, name string) string {
	v := strings.TrimSpace(getenv(inputVar(name)))
	if v == "" && strings.Contains(name, "-") {
		v = strings.TrimSpace(getenv(strings.ReplaceAll(inputVar(name), "-", "_")))
	}
	return v
}

// list splits a comma- or newline-separated input.
func list(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' }) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseExpires reads a duration as Go writes them (72h, 90m) or a whole
// number of days (7d); empty is zero (the target's default).
func parseExpires(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%q is not a number of days", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a duration (e.g. 24h or 7d)", s)
	}
	return d, nil
}

// parseBool reads a boolean input as the actions toolkit's getBooleanInput
// does (YAML 1.2 core schema), empty meaning false.
func parseBool(s string) (bool, error) {
	switch s {
	case "", "false", "False", "FALSE":
		return false, nil
	case "true", "True", "TRUE":
		return true, nil
	}
	return false, fmt.Errorf("%q is not true or false", s)
}

// Option configures Run.
type Option func(*options) error

type options struct {
	lock    []lock.Option
	build   []build.Option
	publish []publish.Option
	upload  func(string, upload.Options) (upload.Target, error)
}

// WithLockOptions adds options to the lock and check calls, after the
// ones the inputs give (tests use it for a fixture fetcher and image
// definitions).
func WithLockOptions(opts ...lock.Option) Option {
	return func(o *options) error { o.lock = append(o.lock, opts...); return nil }
}

// WithBuildOptions adds options to the build call, after the ones the
// inputs give.
func WithBuildOptions(opts ...build.Option) Option {
	return func(o *options) error { o.build = append(o.build, opts...); return nil }
}

// WithPublishOptions adds options to the publish call, after the ones the
// inputs give.
func WithPublishOptions(opts ...publish.Option) Option {
	return func(o *options) error { o.publish = append(o.publish, opts...); return nil }
}

// WithUploadTarget makes upload's target (tests inject endpoints and
// credentials this way); default upload.New.
func WithUploadTarget(f func(string, upload.Options) (upload.Target, error)) Option {
	return func(o *options) error { o.upload = f; return nil }
}

// runner is one run of the action.
type runner struct {
	in        *Inputs
	gh        *githubactions.Action
	log       *logWriter
	files     FileCommands
	getenv    func(string) string
	workspace string
	opts      options
}

// Run runs the command the inputs name. getenv gives the step's
// environment (INPUT_*, GITHUB_OUTPUT, GITHUB_STEP_SUMMARY,
// GITHUB_WORKSPACE, RUNNER_TEMP…) and stdout is the step's log, where
// workflow commands (annotations, masks, groups) go. An error has been
// reported as an annotation already; the process should exit non-zero.
func Run(ctx context.Context, getenv func(string) string, stdout io.Writer, opts ...Option) error {
	log := &logWriter{w: stdout}
	gh := githubactions.New(githubactions.WithGetenv(getenv), githubactions.WithWriter(log))
	// Masks first: nothing may print a secret before the runner knows it.
	maskSecrets(gh, getenv)

	r := &runner{gh: gh, log: log, files: FileCommands{Getenv: getenv}, getenv: getenv}
	for _, opt := range opts {
		if err := opt(&r.opts); err != nil {
			return err
		}
	}
	ctx = ibuild.WithLogger(ctx, slog.New(logHandler{r}))
	r.workspace = getenv("GITHUB_WORKSPACE")
	if r.workspace == "" {
		wd, err := os.Getwd()
		if err != nil {
			return fmt.Errorf("finding the workspace: %w", err)
		}
		r.workspace = wd
	}
	r.workspace = filepath.Clean(r.workspace)

	in, err := ReadInputs(getenv)
	if err != nil {
		r.annotate(err, "ibuild action")
		return err
	}
	r.in = in
	switch in.Command {
	case CommandLock:
		err = r.lock(ctx)
	case CommandCheck:
		err = r.check(ctx)
	case CommandMatrix:
		err = r.matrix()
	case CommandBuild:
		err = r.build(ctx)
	case CommandPublish:
		err = r.publish(ctx)
	case CommandMirror:
		err = r.mirror(ctx)
	case CommandUpload:
		err = r.upload(ctx)
	}
	if err != nil {
		r.log.resume()
		r.annotate(err, "ibuild "+in.Command)
	}
	return err
}

// maskSecrets tells the runner to hide the secret inputs in the log. A
// multi-line value is masked line by line too, since the runner matches
// masks within a line.
func maskSecrets(gh *githubactions.Action, getenv func(string) string) {
	// The clouds' secrets, when a step put them in the environment: the
	// SDKs read them; the log must never show them.
	for _, name := range []string{"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_CLIENT_SECRET", "AZURE_STORAGE_KEY"} {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			gh.AddMask(v)
		}
	}
	for _, name := range []string{"cosign-password", "github-token", "cosign-key"} {
		v := getenv(inputVar(name))
		if v == "" {
			v = getenv(strings.ReplaceAll(inputVar(name), "-", "_"))
		}
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		// A key given as a path or a KMS reference is no secret; masking
		// it would only hide that word everywhere in the log.
		if name == "cosign-key" && !strings.Contains(v, "\n") && !strings.Contains(v, "PRIVATE KEY") {
			continue
		}
		gh.AddMask(v)
		if strings.Contains(v, "\n") {
			for _, line := range strings.Split(v, "\n") {
				if line = strings.TrimSpace(line); len(line) >= 8 {
					gh.AddMask(line)
				}
			}
		}
	}
}

// path resolves an input path against the workspace.
func (r *runner) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(r.workspace, p)
}

// rel is p relative to the workspace, as annotations and outputs name
// files; p itself when it lies outside.
func (r *runner) rel(p string) string {
	if !filepath.IsAbs(p) {
		return p
	}
	rel, err := filepath.Rel(r.workspace, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return p
	}
	return rel
}

// relText shortens the workspace's absolute paths in a message.
func (r *runner) relText(s string) string {
	return strings.ReplaceAll(s, r.workspace+string(filepath.Separator), "")
}

// lockPath is the lockfile input, or the blueprint's default lockfile.
func (r *runner) lockPath() (string, error) {
	if r.in.Lockfile != "" {
		return r.path(r.in.Lockfile), nil
	}
	if r.in.Blueprint != "" {
		return ibuild.DefaultLockPath(r.path(r.in.Blueprint)), nil
	}
	return "", errors.New("input lockfile: required (or a blueprint beside its BLUEPRINT.lock.json)")
}

// cacheDir is the cache-dir input, or RUNNER_TEMP/ibuild-cache, which the
// composite action mounts into its container.
func (r *runner) cacheDir() string {
	if r.in.CacheDir != "" {
		return r.path(r.in.CacheDir)
	}
	if t := r.getenv("RUNNER_TEMP"); t != "" {
		return filepath.Join(t, "ibuild-cache")
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "ibuild")
	}
	return filepath.Join(os.TempDir(), "ibuild-cache")
}

// adopt gives files the action wrote as root (the privileged build) to
// the workspace's owner, so the job's later steps, which run as the
// runner's user, can move and delete them.
func (r *runner) adopt(paths ...string) {
	if os.Geteuid() != 0 {
		return
	}
	st, err := os.Stat(r.workspace)
	if err != nil {
		return
	}
	uid, gid, ok := owner(st)
	if !ok || uid == 0 {
		return
	}
	for _, p := range paths {
		if p == r.workspace || r.rel(p) == p {
			continue // only what lies inside the workspace
		}
		os.Lchown(p, uid, gid)
	}
}

// setOutputs writes step outputs in order; the first failure stops.
func (r *runner) setOutputs(kv ...string) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if err := r.files.SetOutput(kv[i], kv[i+1]); err != nil {
			return err
		}
	}
	return nil
}
