//! Files and mounts: openat2 resolution, detached mounts, mount attributes,
//! inode flags and extended attributes.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::cstring;

/// `openat2(dirfd, path, how)` with `RESOLVE_IN_ROOT`: resolve `path` as if `dirfd`
/// were the root directory, so neither `..` nor absolute symlinks can leave it.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    openat2(root, path, flags, libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS)
}

/// `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`: `path` is opened
/// only if every component of it is a real entry beneath `dir`; a symlink
/// anywhere on the way (ELOOP) or a `..` that climbs out (EXDEV) fails.
pub fn open_beneath(dir: BorrowedFd<'_>, path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    openat2(dir, path, flags, libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS)
}

fn openat2(dir: BorrowedFd<'_>, path: &Path, flags: libc::c_int, resolve: u64) -> io::Result<OwnedFd> {
    let c = cstring(path)?;
    // SAFETY: open_how is plain old data; all-zero is valid (and required for any
    // field this libc version does not name).
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    loop {
        // SAFETY: `c` is a NUL-terminated path that outlives the call, `how` is a
        // valid open_how of the size passed, and `dir` is an open directory fd.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                std::ptr::addr_of!(how),
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel returned a new fd that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        let e = io::Error::last_os_error();
        // openat2 returns EAGAIN when a concurrent rename raced the lookup; retry.
        if !matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
            return Err(e);
        }
    }
}

/// `open_tree(2)` flag: make a detached copy of the mount (a bind mount).
const OPEN_TREE_CLONE: libc::c_uint = 1;
/// `MOUNT_ATTR_RDONLY` from `<linux/mount.h>`.
pub(super) const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// `struct mount_attr` from `<linux/mount.h>`.
#[repr(C)]
#[derive(Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `renameat2(2)` with `RENAME_NOREPLACE`: move `from` to `to` unless `to`
/// exists (`EEXIST`; `ENOTEMPTY` for a directory on some file systems). A
/// raw syscall, because neither musl's nor nix's wrapper is there for every
/// C library exprun is built with.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let (from, to) = (cstring(from)?, cstring(to)?);
    // SAFETY: both paths are NUL-terminated strings that outlive the call;
    // renameat2 only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The file at `path` on a new, detached, read-only bind mount: an `O_PATH`
/// descriptor that no mount table lists, and that goes away with its last
/// user. A write through it fails with `EROFS` whoever tries (needs
/// CAP_SYS_ADMIN, and Linux 5.12 for `mount_setattr`).
pub fn readonly_bind(path: &Path) -> io::Result<OwnedFd> {
    let tree = clone_tree(path)?;
    mount_setattr(tree.as_fd(), MOUNT_ATTR_RDONLY, 0, 0, false)?;
    Ok(tree)
}

/// `open_tree(path, OPEN_TREE_CLONE)`: a detached bind mount of `path` alone
/// (needs CAP_SYS_ADMIN over the caller's mount namespace).
pub(super) fn clone_tree(path: &Path) -> io::Result<OwnedFd> {
    let c = cstring(path)?;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: open_tree reads the NUL-terminated path and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// mount_setattr(2) on the mount `fd` is the root of (`AT_EMPTY_PATH`): set
/// and clear `MOUNT_ATTR_*` bits, and change the propagation type when
/// `propagation` is not 0; on every mount below it too when `recursive`
/// (`AT_RECURSIVE`). Linux 5.12.
pub fn mount_setattr(
    fd: BorrowedFd<'_>,
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    recursive: bool,
) -> io::Result<()> {
    let attr = MountAttr { attr_set, attr_clr, propagation, userns_fd: 0 };
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: mount_setattr reads `attr` (of the size passed) and the empty,
    // NUL-terminated path; `fd` is open for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            std::ptr::addr_of!(attr),
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `FS_IMMUTABLE_FL` from `<linux/fs.h>`.
const FS_IMMUTABLE_FL: libc::c_long = 0x10;

/// Whether the file is immutable (`chattr +i`): nobody without
/// CAP_LINUX_IMMUTABLE can write it, root included.
pub fn is_immutable(fd: BorrowedFd<'_>) -> bool {
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one long into `flags`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    r == 0 && flags & FS_IMMUTABLE_FL != 0
}

/// Remove the file capabilities (`security.capability`) of the open file `fd`:
/// `Ok(true)` when it had some, `Ok(false)` when it had none or the filesystem
/// has no extended attributes.
pub fn remove_file_caps(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: the name is a NUL-terminated literal; fremovexattr reads only it.
    let r = unsafe { libc::fremovexattr(fd.as_raw_fd(), c"security.capability".as_ptr()) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENODATA) | Some(libc::EOPNOTSUPP) => Ok(false),
        _ => Err(e),
    }
}

fn no_xattrs(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENODATA) | Some(libc::ENOTSUP))
}

/// `lgetxattr(2)`: the value of `path`'s xattr `name`, the link itself when
/// `path` is one; `None` when unset or unsupported.
pub fn lgetxattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let path = cstring(path)?;
    let name = CString::new(name).map_err(io::Error::other)?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: both strings are NUL-terminated; `buf` is valid for writes of
        // `buf.len()` bytes, and lgetxattr writes at most that many.
        let r = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        if no_xattrs(&e) {
            return Ok(None);
        }
        if e.raw_os_error() != Some(libc::ERANGE) || buf.len() >= 1 << 20 {
            return Err(e);
        }
        let len = buf.len() * 4;
        buf.resize(len, 0);
    }
}

/// `llistxattr(2)`: the names of `path`'s xattrs (the link's own when `path`
/// is one).
pub fn llistxattr(path: &Path) -> io::Result<Vec<String>> {
    let path = cstring(path)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `path` is NUL-terminated; `buf` is valid for writes of
        // `buf.len()` bytes, and llistxattr writes at most that many.
        let r = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(buf
                .split(|b| *b == 0)
                .filter(|n| !n.is_empty())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect());
        }
        let e = io::Error::last_os_error();
        if no_xattrs(&e) {
            return Ok(Vec::new());
        }
        if e.raw_os_error() != Some(libc::ERANGE) || buf.len() >= 1 << 20 {
            return Err(e);
        }
        let len = buf.len() * 4;
        buf.resize(len, 0);
    }
}

/// `fsetxattr(2)`: set the xattr `name` of the open file `fd` to `value`.
pub fn fsetxattr(fd: BorrowedFd<'_>, name: &std::ffi::CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: `name` is a NUL-terminated string and `value` a live slice whose
    // pointer and length are passed together; the fd is borrowed for the call.
    let r = unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `lsetxattr(2)`: set the xattr `name` of `path` (the link itself when it is
/// one) to `value`.
pub fn lsetxattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let path = cstring(path)?;
    let name = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: both strings are NUL-terminated; the value pointer and length
    // describe a live slice.
    let r = unsafe { libc::lsetxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
