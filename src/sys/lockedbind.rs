//! A read-only bind mount that nobody can make writable, made without
//! privilege: the kernel locks the read-only flag of every mount that it
//! copies into a mount namespace owned by a less privileged user namespace,
//! and no `mount_setattr` or remount in any namespace, the initial one's root
//! included, clears a locked flag (`EPERM`).

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::{clone_process, cstring, exit_now, readonly_bind, wait4, Forked};

/// `MOVE_MOUNT_F_EMPTY_PATH` from `<linux/mount.h>`: the source is the fd itself.
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// The file at `path` (a real path, not a magic link) on a detached bind mount
/// whose read-only flag is locked: an `O_PATH` descriptor that no mount table
/// lists and that a write through fails with `EROFS`, whoever holds it.
///
/// Needs unprivileged user namespaces (Linux 5.12 for `mount_setattr`).
/// A helper process, sharing this process's fd table, makes it in two steps:
///
/// 1. in a new user and mount namespace (its own: it has CAP_SYS_ADMIN over
///    them), a read-only bind of `path`, mounted over `path`;
/// 2. in a second new user and mount namespace, a child of the first: the
///    copy of the first namespace's mounts that the kernel makes for it has
///    that bind's read-only flag locked, and `open_tree(OPEN_TREE_CLONE)` of
///    `path` there gives a detached copy of the bind that keeps the lock.
///
/// The descriptor lands in a slot this process opened before the clone;
/// the helper's namespaces go with it, except the detached mount's own.
pub fn locked_readonly_bind(path: &Path) -> io::Result<OwnedFd> {
    let maps = [
        ("/proc/self/setgroups", "deny".to_string()),
        ("/proc/self/uid_map", format!("{0} {0} 1", nix::unistd::geteuid())),
        ("/proc/self/gid_map", format!("{0} {0} 1", nix::unistd::getegid())),
    ];
    let mut slot = OwnedFd::from(std::fs::File::open("/dev/null")?);
    let (why_read, why_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let flags = (libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_FILES) as u64;
    // The child shares the fd table: it closes only descriptors it opened
    // itself, and leaves through `exit_now`, so the parent's are never dropped
    // on its side.
    let forked = clone_process(flags, None)
        .map_err(|e| io::Error::new(e.kind(), format!("a helper in a new user namespace: {e}")))?;
    match forked {
        Forked::Child => {
            let code = match in_helper(path, &maps, &mut slot) {
                Ok(()) => 0,
                Err(why) => {
                    let _ = nix::unistd::write(&why_write, why.as_bytes());
                    1
                }
            };
            exit_now(code)
        }
        Forked::Parent { pid, .. } => {
            let (status, _) = wait4(pid)?;
            drop(why_write);
            let mut why = String::new();
            std::fs::File::from(why_read).read_to_string(&mut why)?;
            if status != 0 {
                if why.is_empty() {
                    why = format!("the helper process ended with status {status:#x}");
                }
                return Err(io::Error::other(why));
            }
            Ok(slot)
        }
    }
}

/// The helper's side of [`locked_readonly_bind`]: a message naming the step
/// that failed.
fn in_helper(path: &Path, maps: &[(&str, String)], slot: &mut OwnedFd) -> Result<(), String> {
    fn step<E: Into<io::Error>>(what: &str) -> impl FnOnce(E) -> String + '_ {
        move |e| format!("{what}: {}", e.into())
    }
    let bind = readonly_bind(path).map_err(step("read-only bind in a new user namespace"))?;
    move_mount_onto(bind.as_fd(), path).map_err(step("mounting the bind over the binary"))?;
    drop(bind);
    for (file, line) in maps {
        std::fs::write(file, line).map_err(|e| format!("writing {file}: {e}"))?;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER | nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(step("a second user namespace"))?;
    let locked = super::fs::clone_tree(path).map_err(step("open_tree of the locked bind"))?;
    nix::unistd::dup3(locked, slot, nix::fcntl::OFlag::O_CLOEXEC).map_err(step("handing the mount over"))?;
    Ok(())
}

/// `move_mount(fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`: attach the
/// detached mount `fd` at `target`.
fn move_mount_onto(fd: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let c = cstring(target)?;
    // SAFETY: move_mount reads the two NUL-terminated paths, both live for
    // the call; `fd` is open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
