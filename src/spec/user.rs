//! Resolving `-u`/the image's `User` to numeric ids, by reading `/etc/passwd` and
//! `/etc/group` from the image's unpacked layers without mounting them.
//!
//! The layers are in overlayfs format (whiteouts are 0/0 character devices, opaque
//! directories carry `overlay.opaque=y` in its `trusted.` form, or its `user.` form
//! in a rootless store), so the file a container would see
//! is the one in the topmost layer that has it, unless a layer above hides it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::Error;

/// A user as the container's process will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups: `gid` and the groups that list the user, sorted.
    pub additional_gids: Vec<u32>,
    /// Home directory from /etc/passwd, if the user has an entry.
    pub home: Option<String>,
}

/// Read the file at `rel` (e.g. `etc/passwd`) as the merged image shows it.
/// `layers` are bottom first. `None` when no layer has it or it is hidden.
///
/// Each layer's parents of `rel` are checked from the top down before the
/// file itself is looked at, so no lookup goes through a symlink of the image
/// (an `etc -> /some/host/dir` would otherwise be read on the host); a
/// symlink, file or whiteout on the way hides the file, as it does in the
/// container, where the symlink resolves inside the image instead.
pub fn read_image_file(layers: &[PathBuf], rel: &Path) -> io::Result<Option<String>> {
    match crate::image::overlay::lookup(layers, rel)? {
        Some((path, m)) if m.is_file() => {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path)?;
            let mut text = String::new();
            io::Read::read_to_string(&mut f, &mut text)?;
            Ok(Some(text))
        }
        // A directory or symlink: not a plain file to read.
        _ => Ok(None),
    }
}

/// Resolve `spec` (`name`, `uid`, `name:group`, `uid:gid`; empty = root) against
/// the image's passwd and group files.
pub fn resolve(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<ResolvedUser, Error> {
    let spec = spec.trim();
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = passwd.and_then(|p| {
        p.lines().filter_map(PasswdEntry::parse).find(|e| match user_part.parse::<u32>() {
            Ok(uid) => e.uid == uid,
            Err(_) => e.name == user_part,
        })
    });
    let uid = match (&entry, user_part.parse::<u32>()) {
        (_, Ok(uid)) => uid,
        (Some(e), Err(_)) => e.uid,
        (None, Err(_)) => {
            return Err(Error::User {
                user: spec.into(),
                why: format!(
                    "no user {user_part:?} in the image's /etc/passwd{}; give a numeric uid instead",
                    if passwd.is_none() { " (the image has none)" } else { "" }
                ),
            })
        }
    };
    let groups: Vec<GroupEntry<'_>> =
        group.map(|g| g.lines().filter_map(GroupEntry::parse).collect()).unwrap_or_default();
    let gid = match group_part {
        Some(g) if !g.is_empty() => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups.iter().find(|e| e.name == g).map(|e| e.gid).ok_or_else(|| Error::User {
                user: spec.into(),
                why: format!("no group {g:?} in the image's /etc/group; give a numeric gid instead"),
            })?,
        },
        _ => entry.as_ref().map(|e| e.gid).unwrap_or(0),
    };
    // Supplementary groups as login(1)'s initgroups makes them: the primary group
    // plus every group that lists the user's name.
    let mut additional_gids: Vec<u32> = vec![gid];
    if let Some(e) = &entry {
        additional_gids.extend(groups.iter().filter(|g| g.members.contains(&e.name)).map(|g| g.gid));
    }
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(ResolvedUser { uid, gid, additional_gids, home: entry.map(|e| e.home.to_string()) })
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

impl<'a> PasswdEntry<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || line.starts_with('#') {
            return None;
        }
        Some(Self { name: f[0], uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: f[5] })
    }
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

impl<'a> GroupEntry<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || line.starts_with('#') {
            return None;
        }
        let members = f[3].split(',').filter(|m| !m.is_empty()).collect();
        Some(Self { name: f[0], gid: f[2].parse().ok()?, members })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nresearcher:x:1000:1000:R:/home/researcher:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nresearcher:x:1000:\nextra:x:2000:researcher\nother:x:3000:someone,researcher\n";

    #[test]
    fn names_and_numbers_resolve() {
        let r = resolve("researcher", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(
            r,
            ResolvedUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![1000, 2000, 3000],
                home: Some("/home/researcher".into())
            }
        );
        let r = resolve("1000:extra", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((r.uid, r.gid), (1000, 2000));
        assert_eq!(r.additional_gids, vec![2000, 3000]);
        let r = resolve("4242:77", None, None).unwrap();
        assert_eq!((r.uid, r.gid, r.home), (4242, 77, None));
        assert_eq!(resolve("", Some(PASSWD), None).unwrap().home.as_deref(), Some("/root"));
    }

    #[test]
    fn unknown_names_are_refused_with_a_way_out() {
        let e = resolve("ghost", Some(PASSWD), Some(GROUP)).unwrap_err().to_string();
        assert!(e.contains("ghost") && e.contains("numeric uid"), "{e}");
        let e = resolve("root:nogroup", Some(PASSWD), Some(GROUP)).unwrap_err().to_string();
        assert!(e.contains("nogroup"), "{e}");
        let e = resolve("ghost", None, None).unwrap_err().to_string();
        assert!(e.contains("has none"), "{e}");
    }

    #[test]
    fn the_topmost_layer_wins_and_whiteouts_hide() {
        let dir = tempfile::tempdir().unwrap();
        let (l1, l2) = (dir.path().join("l1"), dir.path().join("l2"));
        fs::create_dir_all(l1.join("etc")).unwrap();
        fs::create_dir_all(l2.join("etc")).unwrap();
        fs::write(l1.join("etc/passwd"), "lower").unwrap();
        fs::write(l1.join("etc/group"), "lower").unwrap();
        fs::write(l2.join("etc/passwd"), "upper").unwrap();
        let layers = vec![l1.clone(), l2.clone()];
        assert_eq!(read_image_file(&layers, Path::new("etc/passwd")).unwrap().as_deref(), Some("upper"));
        assert_eq!(read_image_file(&layers, Path::new("etc/group")).unwrap().as_deref(), Some("lower"));
        assert_eq!(read_image_file(&layers, Path::new("etc/shadow")).unwrap(), None);
        if nix::unistd::geteuid().is_root() {
            nix::sys::stat::mknod(
                &l2.join("etc/group"),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                0,
            )
            .unwrap();
            assert_eq!(read_image_file(&layers, Path::new("etc/group")).unwrap(), None);
        }
    }

    /// A rootless store marks opaque directories with `user.overlay.opaque`:
    /// an upper layer's opaque /etc hides the lower layer's passwd, so the
    /// name is not found even though the lower layer lists it.
    #[test]
    fn a_rootless_stores_opaque_dir_hides_the_lower_passwd() {
        use std::os::fd::AsFd;
        let dir = tempfile::tempdir().unwrap();
        let (l1, l2) = (dir.path().join("l1"), dir.path().join("l2"));
        fs::create_dir_all(l1.join("etc")).unwrap();
        fs::create_dir_all(l2.join("etc")).unwrap();
        fs::write(l1.join("etc/passwd"), PASSWD).unwrap();
        fs::write(l2.join("etc/group"), GROUP).unwrap();
        let etc = fs::File::open(l2.join("etc")).unwrap();
        if let Err(e) = crate::sys::fsetxattr(etc.as_fd(), c"user.overlay.opaque", b"y") {
            println!("SKIP: user xattrs unsupported here: {e}");
            return;
        }
        let layers = vec![l1, l2];
        let passwd = read_image_file(&layers, Path::new("etc/passwd")).unwrap();
        assert_eq!(passwd, None, "the opaque /etc of the upper layer must hide the lower passwd");
        let group = read_image_file(&layers, Path::new("etc/group")).unwrap();
        let e = resolve("researcher", passwd.as_deref(), group.as_deref()).unwrap_err().to_string();
        assert!(e.contains("has none"), "{e}");
    }

    #[test]
    fn the_images_symlinks_are_not_followed_on_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let (l1, l2, host) = (dir.path().join("l1"), dir.path().join("l2"), dir.path().join("host"));
        fs::create_dir_all(l1.join("etc")).unwrap();
        fs::create_dir_all(&l2).unwrap();
        fs::create_dir_all(&host).unwrap();
        fs::write(l1.join("etc/passwd"), "lower").unwrap();
        fs::write(host.join("passwd"), "host file").unwrap();
        std::os::unix::fs::symlink(&host, l2.join("etc")).unwrap();
        assert_eq!(
            read_image_file(std::slice::from_ref(&l1), Path::new("etc/passwd")).unwrap().as_deref(),
            Some("lower")
        );
        assert_eq!(read_image_file(&[l1, l2], Path::new("etc/passwd")).unwrap(), None);
    }
}
