package stages

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/image-builder-action/image-builder-action/pkg/treepath"
)

func init() { register[Users]("users", 1) }

// Users creates or modifies groups and users with the tree's own shadow
// tools (groupadd, useradd, usermod, chage) run in the tree.
type Users struct {
	// Groups are made first, so users can name them.
	Groups []GroupSpec `json:"groups,omitempty"`
	Users  []UserSpec  `json:"users,omitempty"`
}

// GroupSpec is a group to create (or whose gid to set when it exists).
type GroupSpec struct {
	Name string `json:"name"`
	GID  *int   `json:"gid,omitempty"`
}

// UserSpec is a user to create, or to modify when the tree has it (root).
type UserSpec struct {
	Name string `json:"name"`
	UID  *int   `json:"uid,omitempty"`
	// GID is the primary group's id; a group named like the user is made
	// with it when the tree has no group with that id.
	GID *int `json:"gid,omitempty"`
	// Groups are supplementary groups; each must exist in the tree (or be
	// made by this stage's Groups).
	Groups      []string `json:"groups,omitempty"`
	Description string   `json:"description,omitempty"`
	Home        string   `json:"home,omitempty"`
	Shell       string   `json:"shell,omitempty"`
	// Password is a crypt(3) hash; plaintext is refused.
	Password string `json:"password,omitempty"`
	// Keys are appended to ~/.ssh/authorized_keys.
	Keys []string `json:"keys,omitempty"`
	// ExpireDate is the account's expiry in days since 1970-01-01
	// (chage -E); -1 removes an expiry.
	ExpireDate *int `json:"expiredate,omitempty"`
	// ForcePasswordReset makes the user change the password at the next
	// login (chage -d 0), as composer's force_password_reset does.
	ForcePasswordReset bool `json:"force_password_reset,omitempty"`
}

// IsCryptHash reports whether s looks like a crypt(3) hash of a scheme
// shadow takes: what users' password option accepts.
func IsCryptHash(s string) bool { return cryptHash.MatchString(s) }

// cryptHash matches the crypt(3) hashes Debian's libxcrypt verifies:
// yescrypt, gost-yescrypt, scrypt, bcrypt, sha512crypt, sha256crypt and
// md5crypt, with their parameters.
var cryptHash = regexp.MustCompile(`^\$(y|gy|7|2[abxy]|6|5|1)\$[./0-9A-Za-z$=,]{8,}$`)

// maxID is the largest id shadow accepts ((uid_t)-1 is reserved).
const maxID = 1<<32 - 2

func checkID(field string, id *int) error {
	if id != nil && (*id < 0 || *id > maxID) {
		return fmt.Errorf("%s: %d is out of range", field, *id)
	}
	return nil
}

// gecosText rejects what would break /etc/passwd.
func gecosText(field, s string) error {
	if strings.ContainsAny(s, ":\n\x00") {
		return fmt.Errorf("%s: %q contains ':' or a newline", field, s)
	}
	return nil
}

func (s *Users) validate() error {
	seen := map[string]bool{}
	for i, g := range s.Groups {
		field := fmt.Sprintf("groups[%d]", i)
		if !accountName.MatchString(g.Name) {
			return fmt.Errorf("%s.name: %q is not a valid group name", field, g.Name)
		}
		if seen[g.Name] {
			return fmt.Errorf("%s.name: %s is listed twice", field, g.Name)
		}
		seen[g.Name] = true
		if err := checkID(field+".gid", g.GID); err != nil {
			return err
		}
	}
	seen = map[string]bool{}
	for i, u := range s.Users {
		field := fmt.Sprintf("users[%d]", i)
		if !accountName.MatchString(u.Name) {
			return fmt.Errorf("%s.name: %q is not a valid user name", field, u.Name)
		}
		if seen[u.Name] {
			return fmt.Errorf("%s.name: %s is listed twice", field, u.Name)
		}
		seen[u.Name] = true
		if err := checkID(field+".uid", u.UID); err != nil {
			return err
		}
		if err := checkID(field+".gid", u.GID); err != nil {
			return err
		}
		for j, g := range u.Groups {
			if !accountName.MatchString(g) {
				return fmt.Errorf("%s.groups[%d]: %q is not a valid group name", field, j, g)
			}
		}
		if err := gecosText(field+".description", u.Description); err != nil {
			return err
		}
		if u.Home != "" {
			if err := checkTreePath(field+".home", u.Home); err != nil {
				return err
			}
			if err := gecosText(field+".home", u.Home); err != nil {
				return err
			}
		}
		if u.Shell != "" {
			if err := checkTreePath(field+".shell", u.Shell); err != nil {
				return err
			}
			if err := gecosText(field+".shell", u.Shell); err != nil {
				return err
			}
		}
		// The password itself is never put in an error: it may be a real
		// one typed in the wrong field.
		if u.Password != "" && !cryptHash.MatchString(u.Password) {
			return fmt.Errorf("%s.password: not a crypt(3) hash ($y$, $6$, $5$, $2b$...): plaintext passwords are refused; hash it first, e.g. with `mkpasswd --method=yescrypt`", field)
		}
		for j, k := range u.Keys {
			if err := checkAuthorizedKey(k); err != nil {
				return fmt.Errorf("%s.keys[%d]: %w", field, j, err)
			}
		}
		if u.ExpireDate != nil && *u.ExpireDate < -1 {
			return fmt.Errorf("%s.expiredate: %d is not a day since 1970-01-01 (or -1)", field, *u.ExpireDate)
		}
	}
	return nil
}

// checkAuthorizedKey checks a line for authorized_keys: one line, with a
// key type and base64 data (options before them are allowed).
func checkAuthorizedKey(k string) error {
	if strings.ContainsAny(k, "\r\n\x00") {
		return errors.New("an ssh key must be one line")
	}
	for _, f := range strings.Fields(k) {
		if strings.HasPrefix(f, "ssh-") || strings.HasPrefix(f, "ecdsa-") || strings.HasPrefix(f, "sk-") {
			return nil
		}
	}
	return fmt.Errorf("%q does not look like an ssh public key (no ssh-*, ecdsa-* or sk-* key type)", k)
}

// Run applies groups, then users.
func (s *Users) Run(ctx context.Context, env *Env) error {
	for i, g := range s.Groups {
		if err := s.group(ctx, env, g); err != nil {
			return fmt.Errorf("groups[%d] %s: %w", i, g.Name, err)
		}
	}
	for i, u := range s.Users {
		if err := s.user(ctx, env, &u); err != nil {
			return fmt.Errorf("users[%d] %s: %w", i, u.Name, err)
		}
	}
	return nil
}

// runInTree runs one of the tree's tools in the tree.
func runInTree(ctx context.Context, env *Env, args ...string) error {
	cmd := &Cmd{
		Root: env.Tree,
		Args: args,
		Env:  []string{"SOURCE_DATE_EPOCH=" + strconv.FormatInt(env.SourceDateEpoch, 10)},
	}
	if err := env.Runner.Run(ctx, cmd); err != nil {
		return fmt.Errorf("running %s in the tree: %w", strings.Join(args, " "), err)
	}
	return nil
}

func (s *Users) group(ctx context.Context, env *Env, g GroupSpec) error {
	acc, err := loadTreeAccounts(env.Tree)
	if err != nil {
		return err
	}
	if gid, ok := acc.gid[g.Name]; ok {
		if g.GID == nil || *g.GID == gid {
			return nil
		}
		return runInTree(ctx, env, "groupmod", "-g", strconv.Itoa(*g.GID), g.Name)
	}
	args := []string{"groupadd"}
	if g.GID != nil {
		args = append(args, "-g", strconv.Itoa(*g.GID))
	}
	return runInTree(ctx, env, append(args, g.Name)...)
}

func (s *Users) user(ctx context.Context, env *Env, u *UserSpec) error {
	acc, err := loadTreeAccounts(env.Tree)
	if err != nil {
		return err
	}
	for _, g := range u.Groups {
		if _, ok := acc.gid[g]; !ok {
			return fmt.Errorf("groups: group %q does not exist in the tree", g)
		}
	}
	var args []string
	if u.UID != nil {
		args = append(args, "-u", strconv.Itoa(*u.UID))
	}
	_, exists := acc.uid[u.Name]
	switch {
	case u.GID != nil:
		if _, ok := acc.groupIDs[*u.GID]; !ok {
			// The user's own group, as useradd would have made it.
			if err := runInTree(ctx, env, "groupadd", "-g", strconv.Itoa(*u.GID), u.Name); err != nil {
				return err
			}
		}
		args = append(args, "-g", strconv.Itoa(*u.GID))
	case !exists:
		// useradd refuses to make the user's group when it exists already
		// (made by this stage's groups, say): join it instead.
		if _, ok := acc.gid[u.Name]; ok {
			args = append(args, "-g", u.Name)
		}
	}
	if len(u.Groups) > 0 {
		if exists {
			args = append(args, "-a")
		}
		args = append(args, "-G", strings.Join(u.Groups, ","))
	}
	if u.Description != "" {
		args = append(args, "-c", u.Description)
	}
	if u.Home != "" && (!exists || acc.home[u.Name] != u.Home) {
		// usermod -m moves the old home's contents, useradd -m makes it.
		args = append(args, "-d", u.Home, "-m")
	}
	if u.Shell != "" {
		args = append(args, "-s", u.Shell)
	}
	if u.Password != "" {
		args = append(args, "-p", u.Password)
	}
	switch {
	case !exists:
		if u.Home == "" {
			args = append(args, "-m")
		}
		if err := runInTree(ctx, env, append(append([]string{"useradd"}, args...), u.Name)...); err != nil {
			return err
		}
	case len(args) > 0:
		if err := runInTree(ctx, env, append(append([]string{"usermod"}, args...), u.Name)...); err != nil {
			return err
		}
	}
	if u.ExpireDate != nil {
		if err := runInTree(ctx, env, "chage", "-E", strconv.Itoa(*u.ExpireDate), u.Name); err != nil {
			return err
		}
	}
	if u.ForcePasswordReset {
		if err := runInTree(ctx, env, "chage", "-d", "0", u.Name); err != nil {
			return err
		}
	}
	if len(u.Keys) > 0 {
		return addAuthorizedKeys(env.Tree, u.Name, u.Keys)
	}
	return nil
}

// addAuthorizedKeys appends the keys missing from the user's
// ~/.ssh/authorized_keys, resolving the home inside the tree.
func addAuthorizedKeys(root, name string, keys []string) error {
	acc, err := loadTreeAccounts(root)
	if err != nil {
		return err
	}
	uid, gid, home := acc.uid[name], acc.userGr[name], acc.home[name]
	if !strings.HasPrefix(home, "/") {
		return fmt.Errorf("keys: home %q of %s is not absolute", home, name)
	}
	homeHost, err := treepath.Resolve(root, home, true)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	if fi, err := os.Stat(homeHost); err != nil || !fi.IsDir() {
		return fmt.Errorf("keys: home %s of %s does not exist in the tree", home, name)
	}
	sshDir, err := treepath.Resolve(root, path.Join(home, ".ssh"), true)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	if err := os.Mkdir(sshDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("keys: %w", err)
	}
	if err := os.Lchown(sshDir, uid, gid); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	if err := os.Chmod(sshDir, 0o700); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	file := filepath.Join(sshDir, "authorized_keys")
	old, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("keys: %w", err)
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(old), "\n") {
		have[strings.TrimSpace(l)] = true
	}
	data := string(old)
	if data != "" && !strings.HasSuffix(data, "\n") {
		data += "\n"
	}
	for _, k := range keys {
		k = strings.TrimSpace(k)
		if !have[k] {
			data += k + "\n"
			have[k] = true
		}
	}
	if err := treeWriteFile(file, []byte(data), 0o600, uid, gid); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	return nil
}
