//! Mounting inside the new root: the holding mount's isolation, the overlay,
//! each of the plan's mounts at a destination resolved inside the root, and
//! the read-only and masked paths after pivot_root.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::{mkdirat, Mode};

use super::error::at;
use super::{fd_path, Error, Op, Result};
use crate::plan::{MountOp, Overlay, RunPlan, Scratch};
use crate::sys::{self, Kernel};

/// Make the mount holding `path` (the bundle's root, or the run directory the
/// overlay goes in) a slave when `propagation` is a slave form, private
/// otherwise: with a shared `/` it would be the host's peer, and the root's
/// own mounts would show on the host.
pub(super) fn isolate_holding_mount(k: &dyn Kernel, path: &Path, propagation: MsFlags) -> Result<()> {
    let real = at(std::fs::canonicalize(path), Op::Isolate, path)?;
    let mountinfo = at(crate::fsutil::read_kernel_file("/proc/self/mountinfo"), Op::Isolate, path)?;
    let Some(point) = holding_mount(&mountinfo, &real) else {
        let why = io::Error::new(io::ErrorKind::NotFound, "no mount in /proc/self/mountinfo holds it");
        return Err(Error { op: Op::Isolate, path: path.to_path_buf(), source: why });
    };
    let kind = if propagation.contains(MsFlags::MS_SLAVE) { MsFlags::MS_SLAVE } else { MsFlags::MS_PRIVATE };
    at(k.mount(None, &point, None, kind, None), Op::Isolate, path)
}

/// Whether step 1's `propagation` of `/` already made every mount, the holding
/// one included, what [`isolate_holding_mount`] would make it: a recursive
/// slave or private propagation does (a private mount made a slave stays
/// private, as [`isolate_holding_mount`] leaves it too). The other forms
/// (shared, unbindable, or not recursive) leave the holder to it.
pub(super) fn holder_already_isolated(propagation: MsFlags) -> bool {
    propagation.contains(MsFlags::MS_REC) && propagation.intersects(MsFlags::MS_SLAVE | MsFlags::MS_PRIVATE)
}

/// The mount point in `mountinfo` that holds the absolute, symlink-free
/// `path`: the longest that is `path` or above it (the last listed of equals,
/// which is on top).
pub(super) fn holding_mount(mountinfo: &str, path: &Path) -> Option<PathBuf> {
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
pub(super) fn unescape_mountinfo(field: &str) -> PathBuf {
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
pub(super) fn remount_readonly(k: &dyn Kernel, path: &Path, extra: MsFlags) -> io::Result<()> {
    use nix::sys::statvfs::FsFlags;
    let have = k.statvfs(path)?;
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | extra;
    for (st, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::from_bits_retain(ST_RELATIME), MsFlags::MS_RELATIME),
    ] {
        if have.contains(st) {
            flags |= ms;
        }
    }
    if !have.intersects(FsFlags::ST_NOATIME | FsFlags::from_bits_retain(ST_RELATIME)) {
        flags |= MsFlags::MS_STRICTATIME;
    }
    if have.bits() & ST_NOSYMFOLLOW != 0 {
        flags |= MsFlags::from_bits_retain(crate::plan::mounts::MS_NOSYMFOLLOW);
    }
    k.mount(None, path, None, flags, None)
}

/// `ST_NOSYMFOLLOW` from `<sys/statvfs.h>`, which nix does not name.
const ST_NOSYMFOLLOW: libc::c_ulong = 0x2000;
/// `ST_RELATIME`, which nix names only for glibc.
const ST_RELATIME: libc::c_ulong = 0x1000;

/// The writable layer (a private tmpfs over the run directory unless it is kept),
/// the run's own files (hosts, hostname), then the overlay at the target.
pub(super) fn mount_overlay(k: &dyn Kernel, plan: &RunPlan, o: &Overlay) -> Result<()> {
    let run_dir = &plan.state_dir;
    if o.scratch == Scratch::Tmpfs {
        let data = match o.scratch_bytes {
            Some(n) => format!("mode=0700,size={n}"),
            None => "mode=0700".to_string(),
        };
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        let tmpfs = Path::new("tmpfs");
        at(k.mount(Some(tmpfs), run_dir, Some("tmpfs"), flags, Some(&data)), Op::WritableTmpfs, run_dir)?;
    }
    for d in [&o.upper, &o.work, &o.target] {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error { op: Op::Create, path: d.clone(), source: e }),
        }
    }
    // The upper dir's attributes become those of the container's `/`: make them
    // the usual ones whatever exprun's umask is.
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    at(std::fs::set_permissions(&o.upper, mode), Op::SetMode, &o.upper)?;
    for (name, content) in &plan.files {
        let p = run_dir.join(name);
        at(std::fs::write(&p, content), Op::Write, &p)?;
    }

    // The overlay. lowerdir paths are relative to layers_root (our cwd for the
    // call), which keeps the option string short enough for ~60 layers.
    at(k.chdir(&o.layers_root), Op::Enter, &o.layers_root)?;
    let mut data =
        format!("lowerdir={},upperdir={},workdir={}", o.lower.join(":"), o.upper.display(), o.work.display());
    if plan.user_ns.is_some() {
        // In a user namespace overlayfs keeps its whiteout and opaque marks in
        // user.overlay.* xattrs, as a rootless import writes them.
        data.push_str(",userxattr");
    }
    // nodev: device nodes created inside the container never work; the ones it
    // needs are bound in from the host below.
    let overlay = Path::new("overlay");
    at(
        k.mount(Some(overlay), &o.target, Some("overlay"), MsFlags::MS_NODEV, Some(&data)),
        Op::Overlay(o.lower.len()),
        &o.target,
    )
}

pub(super) fn mount_one(k: &dyn Kernel, root: BorrowedFd<'_>, m: &MountOp) -> Result<()> {
    let dest = &m.destination;
    let target = open_or_create(root, dest, m.file)?;
    let target_path = fd_path(target.as_fd());
    if m.remount {
        let data = (!m.data.is_empty()).then_some(m.data.as_str());
        at(k.mount(None, &target_path, None, MsFlags::MS_REMOUNT | m.ms_flags(), data), Op::Remount, dest)?;
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
            .map_err(|e| Error { op: Op::Bind(m.source.clone()), path: dest.clone(), source: e })?;
        let source = checked.as_ref().map_or_else(|| PathBuf::from(&m.source), |fd| fd_path(fd.as_fd()));
        at(k.mount(Some(&source), &target_path, None, flags, None), Op::Bind(m.source.clone()), dest)?;
        if !m.ms_flags().is_empty() {
            // The bind's own flags need a remount of the new mount; a fresh lookup
            // reaches it (the old fd still points below it).
            let top = open_or_create(root, dest, m.file)?;
            let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | m.ms_flags();
            at(k.mount(None, &fd_path(top.as_fd()), None, flags, None), Op::BindFlags, dest)?;
        }
    } else {
        let data = (!m.data.is_empty()).then_some(m.data.as_str());
        let op = Op::Mount { fstype: m.fstype.clone().unwrap_or_else(|| "?".into()), data: m.data.clone() };
        let source = Path::new(m.source.as_str());
        at(k.mount(Some(source), &target_path, m.fstype.as_deref(), m.ms_flags(), data), op, dest)?;
    }
    if m.propagation != 0 {
        let top = open_or_create(root, dest, m.file)?;
        let flags = MsFlags::from_bits_truncate(m.propagation);
        at(k.mount(None, &fd_path(top.as_fd()), None, flags, None), Op::SetPropagation, dest)?;
    }
    let attrs = &m.recursive_attrs;
    if !attrs.is_empty() {
        let top = open_or_create(root, dest, m.file)?;
        at(k.mount_setattr(top.as_fd(), attrs.set, attrs.clear, true), Op::RecursiveAttrs, dest)?;
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
            return Err(Error { op: Op::Resolve, path: path.to_path_buf(), source: e })
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
    let Some((name, dirs)) = comps.split_last() else {
        return at(sys::open_in_root(root, path, flags), Op::Resolve, path);
    };
    // The deepest existing directory above `path`, opened for the *at calls
    // (a real descriptor, not O_PATH): usually the parent, found at once.
    let mut have = dirs.len();
    let mut cur: PathBuf = std::iter::once(OsStr::new("/")).chain(dirs.iter().copied()).collect();
    let mut dir = loop {
        match sys::open_in_root(root, &cur, libc::O_RDONLY | libc::O_DIRECTORY) {
            Ok(fd) => break fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound && have > 0 => {
                have -= 1;
                cur.pop();
            }
            Err(e) => return Err(Error { op: Op::Resolve, path: cur, source: e }),
        }
    };
    // Then each missing directory below it, made and entered, resolved inside
    // the root again: a symlink there cannot take the walk out of it.
    for d in &dirs[have..] {
        cur.push(d);
        match mkdirat(dir.as_fd(), *d, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(Error { op: Op::CreateDir, path: cur, source: e.into() }),
        }
        dir = at(sys::open_in_root(root, &cur, libc::O_RDONLY | libc::O_DIRECTORY), Op::Resolve, &cur)?;
    }
    cur.push(name);
    if file {
        let r = nix::fcntl::openat(
            dir.as_fd(),
            *name,
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o644),
        );
        at(r.map(drop), Op::CreateMountPoint, &cur)?;
    } else {
        match mkdirat(dir.as_fd(), *name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(Error { op: Op::CreateDir, path: cur, source: e.into() }),
        }
    }
    drop(dir);
    at(sys::open_in_root(root, path, flags), Op::Resolve, path)
}

/// Bind a path onto itself read-only (after pivot_root). Missing paths are skipped.
pub(super) fn readonly_path(k: &dyn Kernel, p: &Path) -> Result<()> {
    match k.mount(Some(p), p, None, MsFlags::MS_BIND | MsFlags::MS_REC, None) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        r => at(r, Op::ReadonlyBind, p)?,
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    at(remount_readonly(k, p, flags), Op::ReadonlyRemount, p)
}

/// Cover a path (after pivot_root): a directory with an empty read-only tmpfs, a
/// file with /dev/null. Missing paths are skipped. After pivot_root "/dev/null"
/// is the container's own node (or, in a user namespace, the read-only bind of
/// the host's), so what the container does to a masked file stays inside.
pub(super) fn mask_path(k: &dyn Kernel, p: &Path) -> Result<()> {
    let dir = match k.is_dir(p) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error { op: Op::Mask, path: p.to_path_buf(), source: e }),
    };
    let r = if dir {
        k.mount(Some(Path::new("tmpfs")), p, Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0,mode=555"))
    } else {
        k.mount(Some(Path::new("/dev/null")), p, None, MsFlags::MS_BIND, None)
    };
    at(r, Op::Mask, p)
}
