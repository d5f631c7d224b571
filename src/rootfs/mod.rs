//! Building the container's root filesystem, inside the container's new mount
//! namespace (called by the container's init, before it drops privileges).
//!
//! Order, and why:
//! 1. give every mount the propagation `linux.rootfsPropagation` asks for
//!    (recursive slave when it is absent), then make the mount that holds the
//!    root a slave (for the slave forms) or private (for the others), so that
//!    nothing exprun mounts there propagates to the host; a bind of a shared
//!    host mount (containerd's Bidirectional) stays its peer;
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

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{mkdirat, Mode};
use nix::unistd::{chdir, pivot_root};

use crate::plan::{DeviceNode, MountOp, Overlay, RootfsPlan, RunPlan, Scratch};
use crate::sys;

/// A rootfs step failed.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct Error {
    /// What was being done, with the path.
    pub step: String,
    /// The underlying error.
    pub source: io::Error,
}

type Result<T, E = Error> = std::result::Result<T, E>;

fn at<T, E: Into<io::Error>>(r: std::result::Result<T, E>, step: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|e| Error { step: step(), source: e.into() })
}

/// Assemble the root filesystem described by `plan` and pivot into it. `console`
/// is the host path of the pty slave to bind at /dev/console, when there is one.
/// `before_pivot` runs when everything is mounted and pivot_root is next (where
/// the OCI createRuntime and createContainer hooks belong).
pub fn build(
    plan: &RunPlan,
    console: Option<&Path>,
    before_pivot: impl FnOnce() -> Result<()>,
) -> Result<()> {
    // 1. The propagation asked for; the mounts below must not reach the host.
    let propagation = MsFlags::from_bits_truncate(plan.root_propagation);
    at(mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>), || {
        format!("setting the propagation of / ({})", propagation_name(propagation))
    })?;
    let target = plan.rootfs.target();
    let holder = match &plan.rootfs {
        RootfsPlan::Overlay(_) => plan.state_dir.as_path(),
        RootfsPlan::Bundle { path } => path.as_path(),
    };
    isolate_holding_mount(holder, propagation)?;

    // 2. The root: an overlay of the image's layers, or a bundle's directory.
    match &plan.rootfs {
        RootfsPlan::Overlay(o) => mount_overlay(plan, o)?,
        // pivot_root needs a mount point; binding the directory onto itself makes one.
        RootfsPlan::Bundle { path } => at(
            mount(Some(path.as_path()), path, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>),
            || format!("binding the root filesystem {}", path.display()),
        )?,
    }
    let root = at(File::open(target), || format!("opening {}", target.display()))?;

    // 3. The plan's mounts, in order.
    for m in &plan.mounts {
        mount_one(root.as_fd(), m)?;
    }

    // 4. /dev contents, when /dev is our tmpfs.
    if plan.mounts.iter().any(|m| m.destination == Path::new("/dev") && m.fstype.as_deref() == Some("tmpfs"))
    {
        populate_dev(root.as_fd(), plan, console)?;
    }

    //    Then the config's own nodes (linux.devices), which may sit beside or
    //    over the default ones.
    for node in &plan.device_nodes {
        make_node(root.as_fd(), node)?;
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
        || "opening the old root".into(),
    )?;
    at(chdir(target), || format!("entering {}", target.display()))?;
    at(pivot_root(".", "."), || "pivot_root".into())?;
    at(nix::unistd::fchdir(old_root.as_fd()), || "entering the old root".into())?;
    at(mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>), || {
        "making the old root a slave".into()
    })?;
    at(umount2(".", MntFlags::MNT_DETACH), || "detaching the old root".into())?;
    at(chdir("/"), || "entering the new root".into())?;

    // 7. Sysctls (while /proc/sys is still writable), read-only and masked paths,
    //    then the read-only root.
    for (key, value) in &plan.sysctls {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        at(std::fs::write(&path, value), || format!("setting sysctl {key} = {value}"))?;
    }
    for p in &plan.readonly_paths {
        readonly_path(p)?;
    }
    for p in &plan.masked_paths {
        mask_path(p)?;
    }
    if plan.readonly_root {
        remount_readonly(Path::new("/"), MsFlags::MS_NODEV)
            .map_err(|e| Error { step: "remounting / read-only".into(), source: e })?;
    }
    let own = propagation & !MsFlags::MS_REC;
    at(mount(None::<&str>, "/", None::<&str>, own, None::<&str>), || {
        format!("setting the propagation of the container's root ({})", propagation_name(own))
    })
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

/// Make the mount holding `path` (the bundle's root, or the run directory the
/// overlay goes in) a slave when `propagation` is a slave form, private
/// otherwise: with a shared `/` it would be the host's peer, and the root's
/// own mounts would show on the host.
fn isolate_holding_mount(path: &Path, propagation: MsFlags) -> Result<()> {
    let step = || format!("isolating the mount that holds {}", path.display());
    let real = at(std::fs::canonicalize(path), step)?;
    let mountinfo = at(std::fs::read_to_string("/proc/self/mountinfo"), step)?;
    let Some(point) = holding_mount(&mountinfo, &real) else {
        return Err(Error {
            step: step(),
            source: io::Error::new(io::ErrorKind::NotFound, "no mount in /proc/self/mountinfo holds it"),
        });
    };
    let kind = if propagation.contains(MsFlags::MS_SLAVE) { MsFlags::MS_SLAVE } else { MsFlags::MS_PRIVATE };
    at(mount(None::<&str>, &point, None::<&str>, kind, None::<&str>), step)
}

/// The mount point in `mountinfo` that holds the absolute, symlink-free
/// `path`: the longest that is `path` or above it (the last listed of equals,
/// which is on top).
fn holding_mount(mountinfo: &str, path: &Path) -> Option<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape_mountinfo))
        .filter(|point| path.starts_with(point))
        .fold(None, |best: Option<PathBuf>, p| match best {
            Some(b) if b.components().count() > p.components().count() => Some(b),
            _ => Some(p),
        })
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo`.
fn unescape_mountinfo(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let value = u32::from(d[0] - b'0') * 64 + u32::from(d[1] - b'0') * 8 + u32::from(d[2] - b'0');
                out.push(value as u8);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Remount the mount at `path` read-only with `extra` flags, keeping the flags
/// it has: in a user namespace the kernel refuses to clear the ones it locked
/// (nosuid, nodev, noexec, the atime mode of a mount from the host's
/// namespace), which a fixed set of flags would clear.
fn remount_readonly(path: &Path, extra: MsFlags) -> io::Result<()> {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let have = statvfs(path)?.flags();
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | extra;
    for (st, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if have.contains(st) {
            flags |= ms;
        }
    }
    if !have.intersects(FsFlags::ST_NOATIME | FsFlags::ST_RELATIME) {
        flags |= MsFlags::MS_STRICTATIME;
    }
    if have.bits() & ST_NOSYMFOLLOW != 0 {
        flags |= MsFlags::from_bits_retain(crate::plan::mounts::MS_NOSYMFOLLOW);
    }
    Ok(mount(None::<&str>, path, None::<&str>, flags, None::<&str>)?)
}

/// `ST_NOSYMFOLLOW` from `<sys/statvfs.h>`, which nix does not name.
const ST_NOSYMFOLLOW: libc::c_ulong = 0x2000;

/// The writable layer (a private tmpfs over the run directory unless it is kept),
/// the run's own files (hosts, hostname), then the overlay at the target.
fn mount_overlay(plan: &RunPlan, o: &Overlay) -> Result<()> {
    let run_dir = &plan.state_dir;
    if o.scratch == Scratch::Tmpfs {
        let data = match o.scratch_bytes {
            Some(n) => format!("mode=0700,size={n}"),
            None => "mode=0700".to_string(),
        };
        at(
            mount(
                Some("tmpfs"),
                run_dir,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(data.as_str()),
            ),
            || format!("mounting the writable layer's tmpfs at {}", run_dir.display()),
        )?;
    }
    for d in [&o.upper, &o.work, &o.target] {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error { step: format!("creating {}", d.display()), source: e }),
        }
    }
    // The upper dir's attributes become those of the container's `/`: make them
    // the usual ones whatever exprun's umask is.
    at(std::fs::set_permissions(&o.upper, std::os::unix::fs::PermissionsExt::from_mode(0o755)), || {
        format!("setting the mode of {}", o.upper.display())
    })?;
    for (name, content) in &plan.files {
        let p = run_dir.join(name);
        at(std::fs::write(&p, content), || format!("writing {}", p.display()))?;
    }

    // The overlay. lowerdir paths are relative to layers_root (our cwd for the
    // call), which keeps the option string short enough for ~60 layers.
    at(chdir(&o.layers_root), || format!("entering {}", o.layers_root.display()))?;
    let mut data =
        format!("lowerdir={},upperdir={},workdir={}", o.lower.join(":"), o.upper.display(), o.work.display());
    if plan.user_ns.is_some() {
        // In a user namespace overlayfs keeps its whiteout and opaque marks in
        // user.overlay.* xattrs, as a rootless import writes them.
        data.push_str(",userxattr");
    }
    // nodev: device nodes created inside the container never work; the ones it
    // needs are bound in from the host below.
    at(mount(Some("overlay"), &o.target, Some("overlay"), MsFlags::MS_NODEV, Some(data.as_str())), || {
        format!("mounting the image overlay at {} ({} layers)", o.target.display(), o.lower.len())
    })?;
    Ok(())
}

/// The `/proc/self/fd/N` path through which the kernel reaches exactly the file
/// `fd` refers to.
fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn mount_one(root: BorrowedFd<'_>, m: &MountOp) -> Result<()> {
    let dest = &m.destination;
    let target = open_or_create(root, dest, m.file)?;
    let target_path = fd_path(target.as_fd());
    if m.remount {
        let data = (!m.data.is_empty()).then_some(m.data.as_str());
        at(
            mount(None::<&str>, &target_path, None::<&str>, MsFlags::MS_REMOUNT | m.ms_flags(), data),
            || format!("remounting {}", dest.display()),
        )?;
    } else if m.bind {
        let mut flags = MsFlags::MS_BIND;
        if m.recursive {
            flags |= MsFlags::MS_REC;
        }
        // A checked source (an output) is bound through the descriptor that
        // passed the check, so a path changed since then cannot redirect it.
        let checked = m
            .source_id
            .map(|id| crate::outputs::reopen_checked(Path::new(&m.source), id))
            .transpose()
            .map_err(|e| Error { step: format!("binding {} at {}", m.source, dest.display()), source: e })?;
        let source = checked.as_ref().map_or_else(|| PathBuf::from(&m.source), |fd| fd_path(fd.as_fd()));
        at(mount(Some(source.as_path()), &target_path, None::<&str>, flags, None::<&str>), || {
            format!("binding {} at {}", m.source, dest.display())
        })?;
        if !m.ms_flags().is_empty() {
            // The bind's own flags need a remount of the new mount; a fresh lookup
            // reaches it (the old fd still points below it).
            let top = open_or_create(root, dest, m.file)?;
            let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | m.ms_flags();
            at(mount(None::<&str>, &fd_path(top.as_fd()), None::<&str>, flags, None::<&str>), || {
                format!("setting the flags of the bind mount at {}", dest.display())
            })?;
        }
    } else {
        let data = (!m.data.is_empty()).then_some(m.data.as_str());
        at(mount(Some(m.source.as_str()), &target_path, m.fstype.as_deref(), m.ms_flags(), data), || {
            let opts = if m.data.is_empty() { String::new() } else { format!(" with options {}", m.data) };
            format!("mounting {} at {}{opts}", m.fstype.as_deref().unwrap_or("?"), dest.display())
        })?;
    }
    if m.propagation != 0 {
        let top = open_or_create(root, dest, m.file)?;
        let flags = MsFlags::from_bits_truncate(m.propagation);
        at(mount(None::<&str>, &fd_path(top.as_fd()), None::<&str>, flags, None::<&str>), || {
            format!("setting propagation of {}", dest.display())
        })?;
    }
    let attrs = &m.recursive_attrs;
    if !attrs.is_empty() {
        let top = open_or_create(root, dest, m.file)?;
        at(sys::mount_setattr(top.as_fd(), attrs.set, attrs.clear, 0, true), || {
            format!("setting the recursive attributes (rro, rnosuid, ...) of {}", dest.display())
        })?;
    }
    Ok(())
}

/// Open `path` inside `root` (O_PATH), creating missing directories on the way and
/// the last component as a file when `file`. Every step resolves inside `root`.
pub fn open_or_create(root: BorrowedFd<'_>, path: &Path, file: bool) -> Result<OwnedFd> {
    let flags = libc::O_PATH;
    match sys::open_in_root(root, path, flags) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(Error { step: format!("resolving {} in the container", path.display()), source: e })
        }
        Err(_) => {}
    }
    let comps: Vec<&OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut cur = PathBuf::from("/");
    for (i, name) in comps.iter().enumerate() {
        let parent = at(sys::open_in_root(root, &cur, libc::O_PATH | libc::O_DIRECTORY), || {
            format!("resolving {} in the container", cur.display())
        })?;
        cur.push(name);
        let last = i + 1 == comps.len();
        if sys::open_in_root(root, &cur, libc::O_PATH).is_ok() {
            continue;
        }
        // Creating needs a real (not O_PATH) directory fd for the *at calls.
        let dir =
            at(sys::open_in_root(root, &parent_path(&cur), libc::O_RDONLY | libc::O_DIRECTORY), || {
                format!("opening {} in the container", parent_path(&cur).display())
            })?;
        drop(parent);
        if last && file {
            let r = nix::fcntl::openat(
                dir.as_fd(),
                *name,
                OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
                Mode::from_bits_truncate(0o644),
            );
            at(r.map(drop), || format!("creating the mount point {} in the container", cur.display()))?;
        } else {
            match mkdirat(dir.as_fd(), *name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => {
                    return Err(Error {
                        step: format!("creating the directory {} in the container", cur.display()),
                        source: e.into(),
                    })
                }
            }
        }
    }
    at(sys::open_in_root(root, path, flags), || format!("resolving {} in the container", path.display()))
}

/// Enter `dir`, resolved inside the calling process's root as the mount points
/// are (after pivot_root, or after joining a container's mount namespace, that
/// root is the container's): `..` and symlinks stay inside it, and a /proc magic
/// link (`/proc/self/fd/N`, `/proc/PID/cwd`) is refused, because it may name a
/// directory outside the root (a descriptor the process holds, CVE-2024-21626).
pub fn enter_working_dir(dir: &Path) -> io::Result<()> {
    let root = nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let fd =
        sys::open_in_root(root.as_fd(), dir, libc::O_PATH | libc::O_DIRECTORY).map_err(explain_magic_link)?;
    Ok(nix::unistd::fchdir(fd.as_fd())?)
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

/// The default device nodes in the fresh /dev tmpfs, the console, and the usual links.
fn populate_dev(root: BorrowedFd<'_>, plan: &RunPlan, console: Option<&Path>) -> Result<()> {
    for node in &plan.default_devices {
        if plan.devices_from_host {
            bind_host_node(root, &node.path)?;
        } else {
            make_node(root, node)?;
        }
    }
    if let Some(c) = console {
        // The pty exprun made for this container: its own, whatever it does to it.
        let dst = Path::new("/dev/console");
        let target = open_or_create(root, dst, true)?;
        at(mount(Some(c), &fd_path(target.as_fd()), None::<&str>, MsFlags::MS_BIND, None::<&str>), || {
            format!("binding {} at {}", c.display(), dst.display())
        })?;
    }
    let dev = Path::new("/dev");
    let devfd =
        at(sys::open_in_root(root, dev, libc::O_RDONLY | libc::O_DIRECTORY), || "opening /dev".into())?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        match nix::unistd::symlinkat(target, devfd.as_fd(), name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => {
                return Err(Error { step: format!("linking /dev/{name} to {target}"), source: e.into() })
            }
        }
    }
    Ok(())
}

/// mknod a `linux.devices` node inside the root (its parent directories made as
/// needed), then give it its mode and owner. A node already there with the same
/// type and numbers is kept.
fn make_node(root: BorrowedFd<'_>, n: &DeviceNode) -> Result<()> {
    use nix::sys::stat::{fchmodat, fstatat, makedev, mknodat, FchmodatFlags, SFlag};
    let step = || format!("making the device node {}", n.path.display());
    let parent = parent_path(&n.path);
    drop(open_or_create(root, &parent, false)?);
    let dir = at(sys::open_in_root(root, &parent, libc::O_RDONLY | libc::O_DIRECTORY), step)?;
    let name = n.path.file_name().unwrap_or_default();
    let kind = match n.kind {
        'b' => SFlag::S_IFBLK,
        'p' => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    };
    let rdev = makedev(n.major, n.minor);
    match mknodat(dir.as_fd(), name, kind, Mode::from_bits_truncate(n.mode), rdev) {
        Ok(()) => {}
        Err(nix::errno::Errno::EEXIST) => {
            let st = at(fstatat(dir.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW), step)?;
            if st.st_mode & libc::S_IFMT != kind.bits() || (kind != SFlag::S_IFIFO && st.st_rdev != rdev) {
                return Err(Error {
                    step: step(),
                    source: io::Error::new(io::ErrorKind::AlreadyExists, "another file is already there"),
                });
            }
            return Ok(());
        }
        Err(e) => return Err(Error { step: step(), source: e.into() }),
    }
    // mknod applied the umask; the config's mode is exact. No symlink can be
    // there: init made the node a moment ago and nothing else runs in the root.
    at(fchmodat(dir.as_fd(), name, Mode::from_bits_truncate(n.mode), FchmodatFlags::FollowSymlink), step)?;
    at(
        nix::unistd::fchownat(
            dir.as_fd(),
            name,
            Some(n.uid.into()),
            Some(n.gid.into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ),
        step,
    )?;
    let nodev = at(nix::sys::statvfs::fstatvfs(dir.as_fd()), step)?.flags();
    if !nodev.contains(nix::sys::statvfs::FsFlags::ST_NODEV) {
        return Ok(());
    }
    // The directory is on a nodev mount (exprun's own /dev), where no node
    // works, so that one made inside the container never does. This node is
    // the runtime's: a bind mount of itself, with the directory's flags but
    // nodev, makes it work, and it alone.
    let node = at(sys::open_in_root(root, &n.path, libc::O_PATH), step)?;
    let path = fd_path(node.as_fd());
    at(mount(Some(&path), &path, None::<&str>, MsFlags::MS_BIND, None::<&str>), step)?;
    let top = at(sys::open_in_root(root, &n.path, libc::O_PATH), step)?;
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | same_flags(nodev);
    at(mount(None::<&str>, &fd_path(top.as_fd()), None::<&str>, flags, None::<&str>), step)
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
fn bind_host_node(root: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let step = || format!("binding the host's {} read-only", path.display());
    let target = open_or_create(root, path, true)?;
    at(mount(Some(path), &fd_path(target.as_fd()), None::<&str>, MsFlags::MS_BIND, None::<&str>), step)?;
    let top = at(sys::open_in_root(root, path, libc::O_PATH), step)?;
    let flags =
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    at(mount(None::<&str>, &fd_path(top.as_fd()), None::<&str>, flags, None::<&str>), step)
}

/// Bind a path onto itself read-only (after pivot_root). Missing paths are skipped.
fn readonly_path(p: &Path) -> Result<()> {
    match mount(Some(p), p, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>) {
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        r => at(r, || format!("binding read-only path {}", p.display()))?,
    }
    remount_readonly(p, MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC)
        .map_err(|e| Error { step: format!("remounting {} read-only", p.display()), source: e })
}

/// Cover a path (after pivot_root): a directory with an empty read-only tmpfs, a
/// file with /dev/null. Missing paths are skipped. After pivot_root "/dev/null"
/// is the container's own node (or, in a user namespace, the read-only bind of
/// the host's), so what the container does to a masked file stays inside.
fn mask_path(p: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error { step: format!("masking {}", p.display()), source: e }),
    };
    let r = if meta.is_dir() {
        mount(Some("tmpfs"), p, Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0,mode=555"))
    } else {
        mount(Some("/dev/null"), p, None::<&str>, MsFlags::MS_BIND, None::<&str>)
    };
    at(r, || format!("masking {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holding_mount_is_the_deepest_above_the_path_and_unescaped() {
        let info = "22 1 0:21 / / rw - ext4 /dev/vda rw\n\
                    30 22 0:30 / /run rw - tmpfs tmpfs rw\n\
                    31 30 0:31 / /run/a\\040b rw - tmpfs tmpfs rw\n\
                    32 30 0:32 / /run/ab rw - tmpfs tmpfs rw\n\
                    33 30 0:33 / /run/a\\040b rw - tmpfs over rw\n";
        assert_eq!(holding_mount(info, Path::new("/run/a b/rootfs")), Some("/run/a b".into()));
        assert_eq!(holding_mount(info, Path::new("/run/abc")), Some("/run".into()));
        assert_eq!(holding_mount(info, Path::new("/run/ab")), Some("/run/ab".into()));
        assert_eq!(holding_mount(info, Path::new("/srv")), Some("/".into()));
        assert_eq!(unescape_mountinfo("/x\\134y\\011"), PathBuf::from("/x\\y\t"));
        assert_eq!(propagation_name(MsFlags::MS_SHARED | MsFlags::MS_REC), "rshared");
    }
}
