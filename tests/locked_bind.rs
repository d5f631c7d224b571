#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The locked read-only bind mount that a rootless exprun re-executes itself
//! from (selfexe.rs): while its descriptor is still open, nobody, the
//! initial namespace's root with every capability included, can clear its
//! read-only flag (a plain detached read-only bind's flag root can clear, and
//! so can a rootless container's root), and a write through it fails.
//! Runs without libtest's harness: the helper clone needs a single-threaded
//! process.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("locked_bind: skipped (needs root, to show that even root cannot unlock it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("binary");
    std::fs::write(&file, "original\n").unwrap();
    let fd = exprun::sys::locked_readonly_bind(&file).unwrap();
    let through = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let write =
        || std::fs::OpenOptions::new().append(true).open(&through).map(|mut f| f.write_all(b"pwned\n"));
    assert_eq!(write().unwrap_err().raw_os_error(), Some(libc::EROFS), "a write through the locked bind");
    let clear = exprun::sys::mount_setattr(fd.as_fd(), 0, 1 /* MOUNT_ATTR_RDONLY */, 0, false);
    assert_eq!(
        clear.map_err(|e| e.raw_os_error()),
        Err(Some(libc::EPERM)),
        "root cleared the read-only flag of the locked bind"
    );
    assert_eq!(write().unwrap_err().raw_os_error(), Some(libc::EROFS));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "original\n");
    // The mount is detached: it is in no mount table, and goes with the descriptor.
    assert!(!std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(&*dir.path().to_string_lossy()));
    drop(fd);
    println!("locked_bind: a locked read-only bind: write EROFS, unlock EPERM even for root: ok");
}
