//! /dev/shm and the IPC namespace of `exprun run`: `--shm-size`, `--ipc` and a
//! `--tmpfs /dev/shm`, checked together, and the mount options they make.
//! Pure functions.

use std::path::Path;

use super::options::{parse_size, TmpfsMount};
use super::Error;

/// `--ipc`: whose IPC namespace (SysV IPC, POSIX message queues) the container
/// is in, and with it whose /dev/shm it has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ipc {
    /// A new IPC namespace and a /dev/shm tmpfs of the run's own.
    #[default]
    Private,
    /// The host's IPC namespace, and the host's /dev/shm bound.
    Host,
}

impl Ipc {
    /// The default: a namespace of the run's own.
    pub fn is_private(&self) -> bool {
        *self == Ipc::Private
    }
}

/// The size of /dev/shm when neither `--shm-size` nor `--tmpfs /dev/shm` says
/// (docker's and podman's).
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// Where `--tmpfs` replaces the default shared-memory tmpfs.
pub const SHM_PATH: &str = "/dev/shm";

/// `--shm-size`: a size greater than zero.
pub fn parse_shm_size(s: &str) -> Result<u64, Error> {
    parse_size("--shm-size", s)
}

/// The `--tmpfs` mounted at /dev/shm, if any.
pub fn shm_tmpfs(tmpfs: &[TmpfsMount]) -> Option<&TmpfsMount> {
    tmpfs.iter().find(|t| t.destination == Path::new(SHM_PATH))
}

/// Check that `--shm-size`, `--ipc` and a `--tmpfs /dev/shm` ask for one
/// /dev/shm: each of them says what it is, so two of them would contradict.
pub fn check_shm(shm_size: Option<u64>, ipc: Ipc, tmpfs: &[TmpfsMount]) -> Result<(), Error> {
    let conflict = |first: &str, second: String, why: &str| Error::Conflict {
        first: first.into(),
        second,
        why: why.into(),
    };
    let shm = tmpfs.iter().filter(|t| t.destination == Path::new(SHM_PATH)).collect::<Vec<_>>();
    let tmpfs_arg = |t: &TmpfsMount| match t.options.as_slice() {
        [] => format!("--tmpfs {SHM_PATH}"),
        o => format!("--tmpfs {SHM_PATH}:{}", o.join(",")),
    };
    if shm.len() > 1 {
        return Err(conflict(
            &tmpfs_arg(shm[0]),
            tmpfs_arg(shm[1]),
            "give one --tmpfs /dev/shm with all its options",
        ));
    }
    if ipc == Ipc::Host {
        let why = "with --ipc host the container has the host's /dev/shm, whose size and options are \
                   the host's; leave it out, or use --ipc private";
        if shm_size.is_some() {
            return Err(conflict("--ipc host", "--shm-size".into(), why));
        }
        if let Some(t) = shm.first() {
            return Err(conflict("--ipc host", tmpfs_arg(t), why));
        }
    }
    if let (Some(_), Some(t)) = (shm_size, shm.first()) {
        return Err(conflict(
            "--shm-size",
            tmpfs_arg(t),
            "both set /dev/shm; give its size as size= in the --tmpfs options, or leave out the --tmpfs",
        ));
    }
    Ok(())
}

/// The mount options of /dev/shm: exprun's defaults (`nosuid,nodev,noexec,
/// mode=1777` and the size) merged with a `--tmpfs /dev/shm`'s, as docker
/// merges them: a given flag replaces its opposite (`exec` for `noexec`), a
/// given `KEY=VALUE` the default's value of KEY, and the rest is added.
pub fn shm_options(shm_size: Option<u64>, given: Option<&TmpfsMount>) -> Vec<String> {
    let size = shm_size.unwrap_or(DEFAULT_SHM_SIZE);
    let size =
        if size.is_multiple_of(1024) { format!("size={}k", size / 1024) } else { format!("size={size}") };
    let mut out: Vec<String> =
        ["nosuid", "noexec", "nodev", "mode=1777"].iter().map(|o| o.to_string()).chain([size]).collect();
    let key = |o: &str| -> String {
        match o.split_once('=') {
            Some((k, _)) => format!("{k}="),
            None => o.strip_prefix("no").unwrap_or(o).to_string(),
        }
    };
    for o in given.map(|t| t.options.as_slice()).unwrap_or_default() {
        match out.iter_mut().find(|x| key(x) == key(o)) {
            Some(x) => *x = o.clone(),
            None => out.push(o.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::options::parse_tmpfs;

    #[test]
    fn shm_options_merge_into_the_defaults() {
        let defaults = ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"];
        assert_eq!(shm_options(None, None), defaults);
        assert_eq!(shm_options(Some(1 << 30), None)[4], "size=1048576k");
        assert_eq!(shm_options(Some(1000), None)[4], "size=1000");
        let t = parse_tmpfs("/dev/shm:size=8g,exec,mode=1700,nr_inodes=10k,noatime").unwrap();
        assert_eq!(
            shm_options(None, Some(&t)),
            ["nosuid", "exec", "nodev", "mode=1700", "size=8g", "nr_inodes=10k", "noatime"]
        );
        let t = parse_tmpfs("/dev/shm:dev").unwrap();
        assert_eq!(shm_options(None, Some(&t)), ["nosuid", "noexec", "dev", "mode=1777", "size=65536k"]);
    }

    #[test]
    fn shm_size_ipc_and_a_dev_shm_tmpfs_are_refused_together() {
        let shm = |o: &str| parse_tmpfs(&format!("/dev/shm{o}")).unwrap();
        let other = parse_tmpfs("/scratch:size=1g").unwrap();
        assert!(check_shm(Some(1 << 30), Ipc::Private, std::slice::from_ref(&other)).is_ok());
        assert!(check_shm(None, Ipc::Private, &[shm(":size=1g"), other.clone()]).is_ok());
        assert!(check_shm(None, Ipc::Host, &[other]).is_ok());
        for (size, ipc, tmpfs, says) in [
            (Some(1), Ipc::Host, vec![], "--ipc host and --shm-size cannot be used together"),
            (None, Ipc::Host, vec![shm("")], "--ipc host and --tmpfs /dev/shm cannot be used together"),
            (
                Some(1),
                Ipc::Private,
                vec![shm(":size=1g")],
                "--shm-size and --tmpfs /dev/shm:size=1g cannot be used together",
            ),
            (
                None,
                Ipc::Private,
                vec![shm(":exec"), shm(":size=1g")],
                "--tmpfs /dev/shm:exec and --tmpfs /dev/shm:size=1g cannot be used together",
            ),
        ] {
            let e = check_shm(size, ipc, &tmpfs).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        assert!(parse_shm_size("0").unwrap_err().to_string().contains("--shm-size"));
        assert_eq!(parse_shm_size("2g").unwrap(), 2 << 30);
    }
}
