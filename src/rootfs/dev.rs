//! /dev: the container's own device nodes, the console, the usual links.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::mount::MsFlags;

use super::error::at;
use super::{fd_path, open_or_create, parent_path, Error, Op, Result};
use crate::plan::{DeviceNode, RunPlan};
use crate::sys::{self, Kernel};

/// The default device nodes in the fresh /dev tmpfs, the console, and the usual links.
pub(super) fn populate_dev(
    k: &dyn Kernel,
    root: BorrowedFd<'_>,
    plan: &RunPlan,
    console: Option<&Path>,
) -> Result<()> {
    for node in &plan.default_devices {
        if plan.devices_from_host {
            bind_host_node(k, root, &node.path)?;
        } else {
            make_node(k, root, node)?;
        }
    }
    if let Some(c) = console {
        // The pty exprun made for this container: its own, whatever it does to it.
        let dst = Path::new("/dev/console");
        let target = open_or_create(root, dst, true)?;
        let op = Op::Bind(c.display().to_string());
        at(k.mount(Some(c), &fd_path(target.as_fd()), None, MsFlags::MS_BIND, None), op, dst)?;
    }
    let dev = Path::new("/dev");
    let devfd = at(sys::open_in_root(root, dev, libc::O_RDONLY | libc::O_DIRECTORY), Op::OpenInside, dev)?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        match k.symlinkat(target, devfd.as_fd(), name) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                return Err(Error { op: Op::Link(target.into()), path: dev.join(name), source: e })
            }
            _ => {}
        }
    }
    Ok(())
}

/// mknod a `linux.devices` node inside the root (its parent directories made as
/// needed), then give it its mode and owner. A node already there with the same
/// type and numbers is kept.
pub(super) fn make_node(k: &dyn Kernel, root: BorrowedFd<'_>, n: &DeviceNode) -> Result<()> {
    use nix::sys::stat::{fstatat, makedev, SFlag};
    let node_err = |e: io::Error| Error { op: Op::Node, path: n.path.clone(), source: e };
    let parent = parent_path(&n.path);
    let open_dir = || sys::open_in_root(root, &parent, libc::O_RDONLY | libc::O_DIRECTORY);
    let dir = match open_dir() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            drop(open_or_create(root, &parent, false)?);
            open_dir()
        }
        r => r,
    };
    let dir = at(dir, Op::Node, &n.path)?;
    let name = n.path.file_name().unwrap_or_default();
    let kind = match n.kind {
        'b' => SFlag::S_IFBLK,
        'p' => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    };
    let rdev = makedev(n.major, n.minor);
    match k.mknodat(dir.as_fd(), name, kind, n.mode, rdev) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            let st =
                at(fstatat(dir.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW), Op::Node, &n.path)?;
            if st.st_mode & libc::S_IFMT != kind.bits() || (kind != SFlag::S_IFIFO && st.st_rdev != rdev) {
                return Err(node_err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "another file is already there",
                )));
            }
            return Ok(());
        }
        Err(e) => return Err(node_err(e)),
    }
    // mknod applied the umask; the config's mode is exact. No symlink can be
    // there: init made the node a moment ago and nothing else runs in the root.
    k.fchmodat(dir.as_fd(), name, n.mode).map_err(node_err)?;
    k.fchownat(dir.as_fd(), name, n.uid, n.gid).map_err(node_err)?;
    let nodev = at(nix::sys::statvfs::fstatvfs(dir.as_fd()), Op::Node, &n.path)?.flags();
    if !nodev.contains(nix::sys::statvfs::FsFlags::ST_NODEV) {
        return Ok(());
    }
    // The directory is on a nodev mount (exprun's own /dev), where no node
    // works, so that one made inside the container never does. This node is
    // the runtime's: a bind mount of itself, with the directory's flags but
    // nodev, makes it work, and it alone.
    let node = at(sys::open_in_root(root, &n.path, libc::O_PATH), Op::Node, &n.path)?;
    let path = fd_path(node.as_fd());
    k.mount(Some(&path), &path, None, MsFlags::MS_BIND, None).map_err(node_err)?;
    let top = at(sys::open_in_root(root, &n.path, libc::O_PATH), Op::Node, &n.path)?;
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | same_flags(nodev);
    k.mount(None, &fd_path(top.as_fd()), None, flags, None).map_err(node_err)
}

/// The mount flags of `f` that a bind remount takes, nodev left out.
fn same_flags(f: nix::sys::statvfs::FsFlags) -> MsFlags {
    use nix::sys::statvfs::FsFlags;
    let mut flags = MsFlags::empty();
    for (st, ms) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if f.contains(st) {
            flags |= ms;
        }
    }
    flags
}

/// Bind the host's node at `path` onto the same path in the container,
/// read-only. Only in a user namespace, where mknod is refused: there the
/// host's nodes belong to ids the namespace does not map, so chown and chmod
/// fail, and the read-only mount refuses them (and touch) whoever is mapped.
/// Reading and writing the device still work: a read-only mount does not stop
/// writes to a device.
fn bind_host_node(k: &dyn Kernel, root: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let target = open_or_create(root, path, true)?;
    at(k.mount(Some(path), &fd_path(target.as_fd()), None, MsFlags::MS_BIND, None), Op::HostNode, path)?;
    let top = at(sys::open_in_root(root, path, libc::O_PATH), Op::HostNode, path)?;
    let flags =
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    at(k.mount(None, &fd_path(top.as_fd()), None, flags, None), Op::HostNode, path)
}
