package stages

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// btrfsView is the top level mkfs.btrfs --rootdir copies, served read-only
// over FUSE so that its bytes depend on the tree's contents alone.
// mkfs.btrfs walks the directory with glibc's nftw(), whose readdir and
// stat calls are internal to glibc (LD_PRELOAD cannot reach them), and it
// stores what they return: the directory order (inode numbers, directory
// indexes and where file data goes follow it) and each file's times,
// which the host sets on its own. The view lists every directory sorted by
// name and gives the times as mkfs-ext4 leaves them: atime and ctime the
// epoch, mtime clamped to it.
//
// Its root holds a directory per subvolume (the tree at the subvolume's
// path); the mount points of other subvolumes below one show empty, with
// their own owner, mode and mtime.
type btrfsView struct {
	src string
	// subvols maps a subvolume's name to its path in the tree; mounts
	// holds those paths.
	subvols map[string]string
	mounts  map[string]bool
	epoch   int64
	// next numbers the directories that are not the host's (the root and
	// the empty mount points) from 2^63 up, clear of the host's inodes.
	next atomic.Uint64
}

// viewNode is a directory or file of the view: a host path (host), the
// view's root (host ""), or an empty mount point (empty).
type viewNode struct {
	fs.Inode
	v     *btrfsView
	host  string
	tree  string
	empty bool
}

var (
	_ fs.NodeLookuper    = (*viewNode)(nil)
	_ fs.NodeReaddirer   = (*viewNode)(nil)
	_ fs.NodeGetattrer   = (*viewNode)(nil)
	_ fs.NodeOpener      = (*viewNode)(nil)
	_ fs.NodeReadlinker  = (*viewNode)(nil)
	_ fs.NodeGetxattrer  = (*viewNode)(nil)
	_ fs.NodeListxattrer = (*viewNode)(nil)
)

// mountBtrfsView serves the view of the subvolumes (name → path in src)
// at dir; unmount ends it.
func mountBtrfsView(dir, src string, subvols map[string]string, epoch int64) (unmount func() error, err error) {
	v := &btrfsView{src: src, subvols: subvols, mounts: map[string]bool{}, epoch: epoch}
	for _, p := range subvols {
		v.mounts[p] = true
	}
	v.next.Store(1 << 63)
	long := time.Hour
	server, err := fs.Mount(dir, &viewNode{v: v}, &fs.Options{
		EntryTimeout:    &long,
		AttrTimeout:     &long,
		NegativeTimeout: &long,
		MountOptions: fuse.MountOptions{
			FsName: "ibuild-btrfs-view",
			Name:   "ibuild",
			// As root, mount(2) itself: no fusermount in the way.
			DirectMount:       true,
			DirectMountStrict: true,
			MaxReadAhead:      1 << 20,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("serving the tree to mkfs.btrfs over FUSE (/dev/fuse is needed): %w", err)
	}
	var once sync.Once
	var uerr error
	return func() error {
		once.Do(func() { uerr = server.Unmount() })
		return uerr
	}, nil
}

// lstatAttr fills out with the host file's attributes, atime and ctime
// the epoch, mtime clamped to it.
func (v *btrfsView) lstatAttr(p string, out *fuse.Attr) (syscall.Stat_t, syscall.Errno) {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return st, fs.ToErrno(err)
	}
	out.FromStat(&st)
	e := uint64(v.epoch)
	if out.Mtime >= e {
		out.Mtime, out.Mtimensec = e, 0
	}
	out.Atime, out.Atimensec = e, 0
	out.Ctime, out.Ctimensec = e, 0
	return st, 0
}

func (n *viewNode) attr(out *fuse.Attr) syscall.Errno {
	if n.host == "" {
		// The root: root's, 0755, at the epoch.
		out.Mode = syscall.S_IFDIR | 0o755
		out.Nlink = 2
		out.Ino = n.StableAttr().Ino
		t := uint64(n.v.epoch)
		out.Atime, out.Mtime, out.Ctime = t, t, t
		return 0
	}
	_, errno := n.v.lstatAttr(n.host, out)
	if n.empty {
		out.Ino = n.StableAttr().Ino
		out.Nlink = 2
		out.Size = 0
	}
	return errno
}

func (n *viewNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return n.attr(&out.Attr)
}

func (n *viewNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	var child *viewNode
	switch {
	case n.empty:
		return nil, syscall.ENOENT
	case n.host == "":
		p, ok := n.v.subvols[name]
		if !ok {
			return nil, syscall.ENOENT
		}
		child = &viewNode{v: n.v, host: filepath.Join(n.v.src, filepath.FromSlash(p)), tree: p}
	default:
		tree := path.Join(n.tree, name)
		child = &viewNode{v: n.v, host: filepath.Join(n.host, name), tree: tree}
	}
	st, errno := n.v.lstatAttr(child.host, &out.Attr)
	if errno != 0 {
		return nil, errno
	}
	ino := st.Ino
	if n.host != "" && n.v.mounts[child.tree] && st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		child.empty = true
		ino = n.v.next.Add(1)
		out.Ino, out.Nlink, out.Size = ino, 2, 0
	}
	return n.NewInode(ctx, child, fs.StableAttr{Mode: st.Mode & syscall.S_IFMT, Ino: ino}), 0
}

func (n *viewNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	var list []fuse.DirEntry
	switch {
	case n.empty:
	case n.host == "":
		for name := range n.v.subvols {
			list = append(list, fuse.DirEntry{Name: name, Mode: syscall.S_IFDIR})
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	default:
		// os.ReadDir sorts by name.
		ents, err := os.ReadDir(n.host)
		if err != nil {
			return nil, fs.ToErrno(err)
		}
		for _, e := range ents {
			var st syscall.Stat_t
			if err := syscall.Lstat(filepath.Join(n.host, e.Name()), &st); err != nil {
				return nil, fs.ToErrno(err)
			}
			list = append(list, fuse.DirEntry{Name: e.Name(), Mode: st.Mode & syscall.S_IFMT, Ino: st.Ino})
		}
	}
	return fs.NewListDirStream(list), 0
}

func (n *viewNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if n.host == "" || n.empty || flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EROFS
	}
	fd, err := syscall.Open(n.host, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	return fs.NewLoopbackFile(fd), fuse.FOPEN_KEEP_CACHE, 0
}

func (n *viewNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if n.host == "" || n.empty {
		return nil, syscall.EINVAL
	}
	t, err := os.Readlink(n.host)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return []byte(t), 0
}

func (n *viewNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if n.host == "" || n.empty {
		return 0, syscall.ENODATA
	}
	sz, err := unix.Lgetxattr(n.host, attr, dest)
	return uint32(sz), fs.ToErrno(err)
}

func (n *viewNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	if n.host == "" || n.empty {
		return 0, 0
	}
	sz, err := unix.Llistxattr(n.host, dest)
	return uint32(sz), fs.ToErrno(err)
}
