package nsrun

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// init turns the re-executed binary into the namespace's init before
// anything else of the program runs.
func init() {
	if os.Getenv(childEnv) == "" {
		return
	}
	os.Exit(child())
}

// child runs in the new namespaces as pid 1: it mounts, starts the command
// chrooted, reaps every process and exits with the command's status.
func child() int {
	unix.CloseOnExec(3)
	unix.CloseOnExec(4)
	status := os.NewFile(4, "status")
	fail := func(err error) int {
		fmt.Fprintln(status, err)
		status.Close()
		return 125
	}
	data, err := io.ReadAll(os.NewFile(3, "config"))
	if err != nil {
		return fail(fmt.Errorf("reading config: %w", err))
	}
	var cfg config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fail(fmt.Errorf("decoding config: %w", err))
	}
	root, err := setup(&cfg)
	if err != nil {
		return fail(err)
	}
	// The caller's umask must not shape what the command writes: every
	// build gets the usual 022, whoever runs it.
	unix.Umask(0o022)
	pid, err := syscall.ForkExec(cfg.Path, cfg.Args, &syscall.ProcAttr{
		Dir:   cfg.Dir,
		Env:   cfg.Env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Chroot: root},
	})
	if err != nil {
		return fail(fmt.Errorf("starting %s: %w", cfg.Path, err))
	}
	status.Close()
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "nsrun: waiting for %s: %v\n", cfg.Path, err)
			return 125
		}
		if got != pid {
			continue // an orphan reparented to us
		}
		// Returning kills what is left in the namespace.
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

// setup makes the mounts and returns the directory to chroot into.
func setup(cfg *config) (string, error) {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return "", fmt.Errorf("making mounts private: %w", err)
	}
	if err := unix.Sethostname([]byte(Hostname)); err != nil {
		return "", fmt.Errorf("setting host name: %w", err)
	}
	// Bind sources are opened first: mounting the tmpfs dirs may hide them
	// (a source under /tmp when the root is "/").
	srcs := make([]string, len(cfg.Binds))
	for i, b := range cfg.Binds {
		fd, err := unix.Open(b.Src, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", fmt.Errorf("opening bind source %s: %w", b.Src, err)
		}
		defer unix.Close(fd)
		srcs[i] = fmt.Sprintf("/proc/self/fd/%d", fd)
	}
	root := cfg.Root
	if cfg.Overlay {
		s := cfg.Staging
		if err := unix.Mount("tmpfs", s, "tmpfs", 0, "mode=0755"); err != nil {
			return "", fmt.Errorf("mounting overlay tmpfs: %w", err)
		}
		for _, d := range []string{"upper", "work", "root"} {
			if err := os.Mkdir(filepath.Join(s, d), 0o755); err != nil {
				return "", err
			}
		}
		opts := "lowerdir=" + escapeOverlay(cfg.Root) + ",upperdir=" + escapeOverlay(filepath.Join(s, "upper")) +
			",workdir=" + escapeOverlay(filepath.Join(s, "work"))
		if err := unix.Mount("overlay", filepath.Join(s, "root"), "overlay", 0, opts); err != nil {
			return "", fmt.Errorf("mounting overlay of %s: %w", cfg.Root, err)
		}
		root = filepath.Join(s, "root")
	}
	type mnt struct {
		dst, fstype, data string
		flags             uintptr
	}
	for _, m := range []mnt{
		{"/proc", "proc", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"/dev", "tmpfs", "mode=0755,size=64k", unix.MS_NOSUID | unix.MS_NOEXEC},
		{"/tmp", "tmpfs", "mode=1777", unix.MS_NOSUID | unix.MS_NODEV},
		{"/run", "tmpfs", "mode=0755", unix.MS_NOSUID | unix.MS_NODEV},
	} {
		if _, err := ensureMountPoint(root, m.dst, true); err != nil {
			return "", err
		}
		p, err := resolve(root, m.dst)
		if err != nil {
			return "", err
		}
		if err := unix.Mount(m.fstype, p, m.fstype, m.flags, m.data); err != nil {
			return "", fmt.Errorf("mounting %s on %s: %w", m.fstype, m.dst, err)
		}
		if m.dst == "/dev" {
			if err := populateDev(p); err != nil {
				return "", err
			}
		}
	}
	for i, b := range cfg.Binds {
		if _, err := ensureMountPoint(root, b.Dst, b.Dir); err != nil {
			return "", err
		}
		p, err := resolve(root, b.Dst)
		if err != nil {
			return "", err
		}
		if err := unix.Mount(srcs[i], p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return "", fmt.Errorf("binding %s on %s: %w", b.Src, b.Dst, err)
		}
		if b.ReadOnly {
			// Keep the flags the source mount has (nosuid, nodev…), add ro.
			var st unix.Statfs_t
			flags := uintptr(0)
			if err := unix.Statfs(p, &st); err == nil {
				flags = uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_RELATIME | unix.MS_NODIRATIME)
			}
			if err := unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|flags, ""); err != nil {
				return "", fmt.Errorf("making %s read-only: %w", b.Dst, err)
			}
		}
	}
	return root, nil
}

// populateDev fills the fresh /dev tmpfs with the few nodes tools need.
func populateDev(dev string) error {
	for _, n := range []struct {
		name         string
		major, minor uint32
	}{
		{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
	} {
		p := filepath.Join(dev, n.name)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("making /dev/%s: %w", n.name, err)
		}
		// The umask trimmed the mode.
		if err := os.Chmod(p, 0o666); err != nil {
			return err
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC,
		"newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return fmt.Errorf("mounting devpts: %w", err)
	}
	if err := unix.Mount("shm", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return fmt.Errorf("mounting /dev/shm: %w", err)
	}
	for name, target := range map[string]string{
		"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return nil
}

// escapeOverlay escapes the characters overlayfs' option parser splits on.
func escapeOverlay(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `,`, `\,`, `:`, `\:`)
	return r.Replace(p)
}
