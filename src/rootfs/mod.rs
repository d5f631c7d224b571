//! Building the container's root filesystem, inside the container's new mount
//! namespace (called by the container's init, before it drops privileges).
//!
//! Order, and why:
//! 1. give every mount the propagation `linux.rootfsPropagation` asks for
//!    (recursive slave when it is absent), then make the mount that holds the
//!    root a slave (for the slave forms) or private (for the others), so that
//!    nothing exprun mounts there propagates to the host; a bind of a shared
//!    host mount (containerd's Bidirectional) stays its peer. A recursive slave
//!    or private `/` (the default) has already done that to every mount, so
//!    the holding mount is looked up (/proc/self/mountinfo) only for the others;
//! 2. the writable layer: a tmpfs over the run directory, private to this mount
//!    namespace (no disk writes, nothing to clean up when the namespace dies),
//!    unless the layer is to be kept; then the overlay of the image's layers plus
//!    that upper dir: no copy, no extraction;
//! 3. the plan's mounts (/proc, /dev, ..., then the user's), each destination
//!    resolved inside the new root with openat2(RESOLVE_IN_ROOT), so an image's
//!    symlinks cannot redirect a mount onto the host (CVE-2021-30465 class);
//! 4. the container's own device nodes in the /dev tmpfs (made with mknod, so
//!    nothing done to them inside reaches the host's; in a user namespace, where
//!    mknod is refused, the host's bound read-only), /dev symlinks. The /dev
//!    tmpfs of `exprun run` is nodev, so a node the container makes does not
//!    work: each of ours is then a bind mount of itself without nodev;
//! 5. the working directory, created while the root is still writable;
//! 6. pivot_root, then detach the old root, made a recursive slave first so
//!    the unmounts do not reach the host's mounts;
//! 7. read-only and masked paths (now plain paths in the new root), the
//!    read-only remount of `/` (keeping the flags a user namespace locked),
//!    because the steps before write to it, then the root's own propagation
//!    (an unbindable root refuses the binds of the read-only paths).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::Mode;

use crate::plan::{RootfsPlan, RunPlan};
use crate::sys::{self, Kernel};

mod dev;
mod error;
mod mounts;
#[cfg(test)]
pub(crate) mod tests;

pub use error::{Error, Op};
pub use mounts::open_or_create;

use error::at;

type Result<T, E = Error> = std::result::Result<T, E>;

/// Assemble the root filesystem described by `plan` and pivot into it, through
/// `k`. `console` is the host path of the pty slave to bind at /dev/console,
/// when there is one. `before_pivot` runs when everything is mounted and
/// pivot_root is next (where the OCI createRuntime and createContainer hooks
/// belong).
pub fn build(
    k: &dyn Kernel,
    plan: &RunPlan,
    console: Option<&Path>,
    before_pivot: impl FnOnce() -> Result<()>,
) -> Result<()> {
    // 1. The propagation asked for; the mounts below must not reach the host.
    let propagation = MsFlags::from_bits_truncate(plan.root_propagation);
    at(
        k.mount(None, Path::new("/"), None, propagation, None),
        Op::Propagation(propagation_name(propagation)),
        "/",
    )?;
    let target = plan.rootfs.target();
    let holder = match &plan.rootfs {
        RootfsPlan::Overlay(_) => plan.state_dir.as_path(),
        RootfsPlan::Bundle { path } => path.as_path(),
    };
    if !mounts::holder_already_isolated(propagation) {
        mounts::isolate_holding_mount(k, holder, propagation)?;
    }

    // 2. The root: an overlay of the image's layers, or a bundle's directory.
    match &plan.rootfs {
        RootfsPlan::Overlay(o) => mounts::mount_overlay(k, plan, o)?,
        // pivot_root needs a mount point; binding the directory onto itself makes one.
        RootfsPlan::Bundle { path } => {
            at(k.mount(Some(path), path, None, MsFlags::MS_BIND | MsFlags::MS_REC, None), Op::BindRoot, path)?
        }
    }
    let root = at(File::open(target), Op::Open, target)?;

    // 3. The plan's mounts, in order.
    for m in &plan.mounts {
        mounts::mount_one(k, root.as_fd(), m)?;
    }

    // 4. /dev contents, when /dev is our tmpfs.
    if plan.mounts.iter().any(|m| m.destination == Path::new("/dev") && m.fstype.as_deref() == Some("tmpfs"))
    {
        dev::populate_dev(k, root.as_fd(), plan, console)?;
    }

    //    Then the config's own nodes (linux.devices), which may sit beside or
    //    over the default ones.
    for node in &plan.device_nodes {
        dev::make_node(k, root.as_fd(), node)?;
    }

    // 5. The working directory must exist before `/` may become read-only.
    open_or_create(root.as_fd(), &plan.process.cwd, false)
        .map_err(|e| Error { source: explain_magic_link(e.source), ..e })?;
    before_pivot()?;

    // 6. pivot_root(".", ".") stacks the old root under the new one; detaching it
    //    leaves only the container's tree. The old root is made a recursive
    //    slave first (a shared `/` of step 1 would be the host's peer), so the
    //    detach does not reach the host. It is reached through a descriptor
    //    taken before: what "." is right after pivot_root is not something the
    //    kernel promises.
    let old_root = at(
        nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()),
        Op::OpenOldRoot,
        "/",
    )?;
    let dot = Path::new(".");
    at(k.chdir(target), Op::Enter, target)?;
    at(k.pivot_root(dot, dot), Op::PivotRoot, target)?;
    at(k.fchdir(old_root.as_fd()), Op::EnterOldRoot, "/")?;
    at(k.mount(None, dot, None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None), Op::SlaveOldRoot, "/")?;
    at(k.umount_detach(dot), Op::DetachOldRoot, "/")?;
    at(k.chdir(Path::new("/")), Op::EnterNewRoot, "/")?;

    // 7. Sysctls (while /proc/sys is still writable), read-only and masked paths,
    //    then the read-only root.
    for (key, value) in &plan.sysctls {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        let op = Op::Sysctl { key: key.clone(), value: value.clone() };
        at(k.write_file(&path, value), op, &path)?;
    }
    for p in &plan.readonly_paths {
        mounts::readonly_path(k, p)?;
    }
    for p in &plan.masked_paths {
        mounts::mask_path(k, p)?;
    }
    if plan.readonly_root {
        let root = Path::new("/");
        at(mounts::remount_readonly(k, root, MsFlags::MS_NODEV), Op::ReadonlyRemount, root)?;
    }
    let own = propagation & !MsFlags::MS_REC;
    at(k.mount(None, Path::new("/"), None, own, None), Op::Propagation(propagation_name(own)), "/")
}

/// The name of a propagation type, as config.json spells it.
fn propagation_name(p: MsFlags) -> String {
    let kind = if p.contains(MsFlags::MS_SHARED) {
        "shared"
    } else if p.contains(MsFlags::MS_PRIVATE) {
        "private"
    } else if p.contains(MsFlags::MS_UNBINDABLE) {
        "unbindable"
    } else {
        "slave"
    };
    format!("{}{kind}", if p.contains(MsFlags::MS_REC) { "r" } else { "" })
}

/// The `/proc/self/fd/N` path through which the kernel reaches exactly the file
/// `fd` refers to.
fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Enter `dir`, resolved inside the calling process's root as the mount points
/// are (after pivot_root, or after joining a container's mount namespace, that
/// root is the container's): `..` and symlinks stay inside it, and a /proc magic
/// link (`/proc/self/fd/N`, `/proc/PID/cwd`) is refused, because it may name a
/// directory outside the root (a descriptor the process holds, CVE-2024-21626).
pub fn enter_working_dir(k: &dyn Kernel, dir: &Path) -> io::Result<()> {
    let root = nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let fd =
        sys::open_in_root(root.as_fd(), dir, libc::O_PATH | libc::O_DIRECTORY).map_err(explain_magic_link)?;
    k.fchdir(fd.as_fd())
}

/// openat2 answers RESOLVE_NO_MAGICLINKS with ELOOP, which alone reads as a
/// symlink loop.
fn explain_magic_link(e: io::Error) -> io::Error {
    if e.raw_os_error() != Some(libc::ELOOP) {
        return e;
    }
    io::Error::new(
        e.kind(),
        format!(
            "{e}: the path goes through a /proc magic link (such as /proc/self/fd/N or /proc/PID/cwd), \
             which may lead out of the container, or through too many symlinks; give a path inside \
             the container"
        ),
    )
}

fn parent_path(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"))
}
