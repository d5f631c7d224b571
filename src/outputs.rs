//! `--output` directories on the host, opened so that no other local user can
//! redirect them.
//!
//! exprun is often root, and an output path often lies where other users can
//! write (/tmp, a shared project directory). The path is walked one component
//! at a time from `/` ([`crate::hostpath`]), each opened with O_NOFOLLOW
//! relative to the directory before it; a symlink is followed only if root or the caller owns it (the
//! rule of the kernel's protected_symlinks, applied everywhere rather than in
//! sticky directories only: a user's symlink may point at /etc), and the
//! directory reached must be owned by root, the caller or the user the command
//! runs as (who writes there anyway). Missing directories
//! are made with mkdirat under the opened parent. The descriptor is kept: the
//! container's init binds only that directory (checked by device and inode,
//! see `rootfs`), and the digest after the run reads through it.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::hostpath::{self, Stop};
use nix::fcntl::OFlag;
use nix::sys::stat::{fstat, Mode};

/// An output directory could not be opened safely.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A symlink on the way belongs to another user.
    #[error(
        "--output {path}: {link} is a symlink owned by uid {owner}, who is neither root nor you \
         (uid {caller}): that user could point it anywhere; give the output's real path, without \
         the symlink"
    )]
    ForeignSymlink {
        /// The output path as given.
        path: PathBuf,
        /// The symlink.
        link: PathBuf,
        /// Its owner.
        owner: u32,
        /// exprun's effective uid.
        caller: u32,
    },
    /// The directory belongs to another user.
    #[error(
        "--output {path}: the directory {dir} is owned by uid {owner}, who is neither root, nor you \
         (uid {caller}), nor the user the command runs as: that user could change or read what \
         the run writes; use a directory you own"
    )]
    ForeignDirectory {
        /// The output path as given.
        path: PathBuf,
        /// The directory reached.
        dir: PathBuf,
        /// Its owner.
        owner: u32,
        /// exprun's effective uid.
        caller: u32,
    },
    /// A component is neither a directory nor a symlink.
    #[error("--output {path}: {component} is not a directory; an output must be a directory")]
    NotDirectory {
        /// The output path as given.
        path: PathBuf,
        /// The component.
        component: PathBuf,
    },
    /// A system call failed.
    #[error("--output {path}: {op} {component}: {source}")]
    Io {
        /// The output path as given.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// On which component.
        component: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// An output directory, open (`O_PATH`).
#[derive(Debug)]
pub struct OutputDir {
    /// The directory.
    pub fd: OwnedFd,
    /// Its device and inode, for init to check that it binds this directory.
    pub id: (u64, u64),
}

/// Open (making what is missing) the output directory at the absolute `path`
/// for the user `caller`; the directory may also be owned by `writer`, the
/// host uid the command runs as.
pub fn open(path: &Path, caller: u32, writer: Option<u32>) -> Result<OutputDir, Error> {
    let follows = |owner: u32| owner == 0 || owner == caller;
    let reached = hostpath::open_dir(path, &hostpath::Walk { follows: &follows, make_missing: true })
        .map_err(|stop| match stop {
            Stop::ForeignSymlink { link, owner } => {
                Error::ForeignSymlink { path: path.to_path_buf(), link, owner, caller }
            }
            Stop::NotDirectory { component } => Error::NotDirectory { path: path.to_path_buf(), component },
            Stop::Io { op, component, errno } => {
                Error::Io { path: path.to_path_buf(), op, component, source: errno.into() }
            }
        })?;
    let st = reached.stat;
    if st.st_uid != 0 && st.st_uid != caller && Some(st.st_uid) != writer {
        return Err(Error::ForeignDirectory {
            path: path.to_path_buf(),
            dir: reached.path,
            owner: st.st_uid,
            caller,
        });
    }
    Ok(OutputDir { fd: reached.fd, id: (st.st_dev, st.st_ino) })
}

/// Open the bind source `source` again (in the container's init) and check it is
/// the directory exprun checked: a path under another user's control may lead
/// elsewhere by now.
pub fn reopen_checked(source: &Path, id: (u64, u64)) -> io::Result<OwnedFd> {
    let gone = |why: String| {
        io::Error::other(format!(
            "{} is no longer the directory exprun checked ({why}); refusing to bind it",
            source.display()
        ))
    };
    let fd = match nix::fcntl::open(
        source,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e @ (Errno::ENOENT | Errno::ENOTDIR)) => return Err(gone(format!("moved away: {e}"))),
        Err(e) => return Err(e.into()),
    };
    let st = fstat(fd.as_fd())?;
    if (st.st_dev, st.st_ino) != id {
        return Err(gone("another file was put in its place after the check".into()));
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    /// Make `p` another user's (root can give it away), or else act as another
    /// caller; either way the caller to pass.
    fn as_another_user(p: &Path) -> u32 {
        if me() == 0 {
            std::os::unix::fs::lchown(p, Some(54321), Some(54321)).unwrap();
            0
        } else {
            me() + 1
        }
    }

    #[test]
    fn missing_directories_are_made_and_the_same_inode_is_returned() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b/c");
        let out = open(&p, me(), None).unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(out.id, (meta.dev(), meta.ino()));
        assert!(reopen_checked(&p, out.id).is_ok());
        assert_eq!(open(&p, me(), None).unwrap().id, out.id, "an existing directory is opened as it is");
    }

    #[test]
    fn the_callers_symlinks_are_followed_relative_and_absolute() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("real/out")).unwrap();
        symlink("real", d.path().join("rel")).unwrap();
        symlink(d.path().join("real"), d.path().join("abs")).unwrap();
        symlink("../real/out", d.path().join("real/up")).unwrap();
        let want = open(&d.path().join("real/out"), me(), None).unwrap().id;
        for p in ["rel/out", "abs/out", "real/up", "rel/up"] {
            assert_eq!(open(&d.path().join(p), me(), None).unwrap().id, want, "{p}");
        }
    }

    #[test]
    fn a_symlink_of_another_user_is_refused_with_what_to_do() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        symlink("real", d.path().join("link")).unwrap();
        let e = open(&d.path().join("link/out"), as_another_user(&d.path().join("link")), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("link is a symlink owned by uid") && e.contains("without the symlink"), "{e}");
        assert!(!d.path().join("real/out").exists(), "nothing made past a refused symlink");
    }

    #[test]
    fn a_directory_of_another_user_or_a_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("x")).unwrap();
        let caller = as_another_user(&d.path().join("x"));
        let e = open(&d.path().join("x"), caller, None).unwrap_err().to_string();
        assert!(e.contains("is owned by uid") && e.contains("use a directory you own"), "{e}");
        let owner = std::fs::metadata(d.path().join("x")).unwrap().uid();
        assert!(open(&d.path().join("x"), caller, Some(owner)).is_ok(), "the command's own user's");
        std::fs::write(d.path().join("f"), "").unwrap();
        let e = open(&d.path().join("f/out"), me(), None).unwrap_err().to_string();
        assert!(e.contains("is not a directory"), "{e}");
        symlink("loop", d.path().join("loop")).unwrap();
        assert!(open(&d.path().join("loop"), me(), None).is_err());
    }

    #[test]
    fn a_replaced_directory_is_not_bound() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out");
        let out = open(&p, me(), None).unwrap();
        std::fs::rename(&p, d.path().join("moved")).unwrap();
        std::fs::create_dir(&p).unwrap();
        let e = reopen_checked(&p, out.id).unwrap_err().to_string();
        assert!(e.contains("no longer the directory exprun checked"), "{e}");
    }
}
