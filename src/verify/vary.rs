//! The variations of `exprun verify --vary`: each changes one thing a run should
//! not depend on (reprotest's list is the model), by changing the replay's spec.
//! None needs a privilege beyond what `exprun run` has.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::Error;

/// One variation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variation {
    /// Another hostname.
    Hostname,
    /// Another user of the image's /etc/passwd: an ordinary user (else nobody)
    /// instead of root, root instead of another user.
    User,
    /// Another time zone (TZ=XST-14, fourteen hours east of UTC).
    Tz,
    /// Another locale the image has (LANG and LC_ALL).
    Locale,
    /// Another umask (002 instead of 022, or 022).
    Umask,
    /// Another CPU count: bound to other CPUs, thread-count variables changed,
    /// and the CPU count files (/sys/devices/system/cpu/online,
    /// /proc/cpuinfo) showing the bound CPUs only.
    Cpus,
    /// Address-space randomisation switched.
    Aslr,
    /// The environment in reverse order.
    EnvOrder,
    /// Input directories listed in another order.
    DirentOrder,
}

/// Every variation, in the order `--vary all` tries them.
pub const ALL: &[Variation] = &[
    Variation::Hostname,
    Variation::User,
    Variation::Tz,
    Variation::Locale,
    Variation::Umask,
    Variation::Cpus,
    Variation::Aslr,
    Variation::EnvOrder,
    Variation::DirentOrder,
];

/// The hostname under the `hostname` variation.
pub const VARIED_HOSTNAME: &str = "exprun-varied";
/// The time zone under `tz`: a POSIX TZ string, so no zoneinfo file is needed.
pub const VARIED_TZ: &str = "XST-14";

impl Variation {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Variation::Hostname => "hostname",
            Variation::User => "user",
            Variation::Tz => "tz",
            Variation::Locale => "locale",
            Variation::Umask => "umask",
            Variation::Cpus => "cpus",
            Variation::Aslr => "aslr",
            Variation::EnvOrder => "env-order",
            Variation::DirentOrder => "dirent-order",
        }
    }

    /// `--vary a,b,c` (or `all`), several times allowed; sorted, no duplicates.
    pub fn parse_list(given: &[String]) -> Result<Vec<Variation>, Error> {
        let mut out = Vec::new();
        for item in given.iter().flat_map(|g| g.split(',')).map(str::trim).filter(|s| !s.is_empty()) {
            if item == "all" {
                out.extend_from_slice(ALL);
                continue;
            }
            let v = ALL.iter().find(|v| v.name() == item).ok_or_else(|| Error::UnknownVariation {
                given: item.to_string(),
                known: ALL.iter().map(|v| v.name()).collect::<Vec<_>>().join(", "),
            })?;
            out.push(*v);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// Names of a set, joined with `+`.
pub fn label(set: &[Variation]) -> String {
    set.iter().map(|v| v.name()).collect::<Vec<_>>().join("+")
}

/// What the variations need besides the spec.
#[derive(Default)]
pub struct VaryContext {
    /// The CPUs the `cpus` variation binds to.
    pub cpus: Vec<usize>,
    /// The CPU count files for them (`online`, `cpuinfo`), bound over the
    /// container's.
    pub cpu_files: Option<(PathBuf, PathBuf)>,
    /// The (uid, gid) the `user` variation runs as.
    pub user: Option<(u32, u32)>,
    /// The locale the `locale` variation sets.
    pub locale: Option<String>,
    /// Input sources and their copies listed in another order (`dirent-order`).
    pub reordered_inputs: Vec<(PathBuf, PathBuf)>,
}

/// The CPUs the `cpus` variation binds a run pinned to `pinned` (none: not
/// pinned) to, out of the `allowed` ones: one CPU instead of several, another
/// CPU instead of one, or all when exprun may use only the one it was pinned to.
pub fn varied_cpus(pinned: &[usize], allowed: &[usize]) -> Vec<usize> {
    let first = allowed.first().copied().unwrap_or(0);
    let other = allowed.iter().copied().find(|c| !pinned.contains(c));
    match (pinned.len(), other) {
        (1, Some(o)) => vec![o],
        (1, None) => allowed.to_vec(),
        _ => vec![first],
    }
}

/// Apply `set` to a replay's spec and CPU binding.
pub fn apply(set: &[Variation], spec: &mut Spec, cpus: &mut Vec<usize>, ctx: &VaryContext) {
    for v in set {
        match v {
            Variation::Hostname => {
                spec.set_hostname(Some(VARIED_HOSTNAME.into()));
            }
            Variation::User => {
                if let Some((uid, gid)) = ctx.user {
                    vary_user(spec, uid, gid)
                }
            }
            Variation::Tz => set_env(spec, &[("TZ", VARIED_TZ.into())]),
            Variation::Locale => {
                if let Some(l) = &ctx.locale {
                    set_env(spec, &[("LANG", l.clone()), ("LC_ALL", l.clone())])
                }
            }
            Variation::Umask => {
                if let Some(mut p) = spec.process().clone() {
                    let mut user = p.user().clone();
                    let now = user.umask().unwrap_or(0o022);
                    user.set_umask(Some(if now == 0o002 { 0o022 } else { 0o002 }));
                    p.set_user(user);
                    spec.set_process(Some(p));
                }
            }
            Variation::Cpus => {
                cpus.clone_from(&ctx.cpus);
                if let Some((online, cpuinfo)) = &ctx.cpu_files {
                    let mut mounts = spec.mounts().clone().unwrap_or_default();
                    for (src, dst) in [(online, "/sys/devices/system/cpu/online"), (cpuinfo, "/proc/cpuinfo")]
                    {
                        let m = oci_spec::runtime::MountBuilder::default()
                            .destination(dst)
                            .typ("bind")
                            .source(src)
                            .options(vec![
                                "bind".to_string(),
                                "ro".to_string(),
                                "nosuid".into(),
                                "nodev".into(),
                                "noexec".into(),
                            ])
                            .build();
                        if let Ok(m) = m {
                            mounts.push(m);
                        }
                    }
                    spec.set_mounts(Some(mounts));
                }
                let threads = env_value(spec, "OMP_NUM_THREADS").and_then(|v| v.parse::<usize>().ok());
                let n = if threads.unwrap_or(1) > 1 { 1 } else { 2 };
                let vars: Vec<(&str, String)> =
                    crate::spec::pins::THREAD_VARS.iter().map(|v| (*v, n.to_string())).collect();
                set_env(spec, &vars);
            }
            Variation::Aslr => {
                let off = spec
                    .linux()
                    .as_ref()
                    .and_then(|l| l.personality().as_ref())
                    .is_some_and(|p| p.flags().iter().flatten().any(|f| f == "ADDR_NO_RANDOMIZE"));
                crate::spec::set_aslr(spec, off);
            }
            Variation::EnvOrder => {
                if let Some(mut p) = spec.process().clone() {
                    if let Some(env) = p.env_mut() {
                        env.reverse();
                    }
                    spec.set_process(Some(p));
                }
            }
            Variation::DirentOrder => {
                let Some(mut mounts) = spec.mounts().clone() else { continue };
                for m in &mut mounts {
                    let Some(src) = m.source().clone() else { continue };
                    if let Some((_, copy)) = ctx.reordered_inputs.iter().find(|(orig, _)| *orig == src) {
                        m.set_source(Some(copy.clone()));
                    }
                }
                spec.set_mounts(Some(mounts));
            }
        }
    }
}

/// Root becomes `uid` without capabilities; another user becomes root with the
/// bounding set.
fn vary_user(spec: &mut Spec, new: u32, gid: u32) {
    let Some(mut p) = spec.process().clone() else { return };
    let mut user = p.user().clone();
    user.set_uid(new);
    user.set_gid(gid);
    user.set_additional_gids(None);
    p.set_user(user);
    if let Some(mut caps) = p.capabilities().clone() {
        let now = if new == 0 { caps.bounding().clone() } else { Some(Default::default()) };
        caps.set_effective(now.clone());
        caps.set_permitted(now);
        caps.set_ambient(Some(Default::default()));
        p.set_capabilities(Some(caps));
    }
    spec.set_process(Some(p));
}

fn env_value(spec: &Spec, name: &str) -> Option<String> {
    let p = spec.process().as_ref()?;
    p.env().iter().flatten().find_map(|e| e.strip_prefix(name)?.strip_prefix('=').map(str::to_string))
}

/// Set variables in the spec's environment, in place when present.
fn set_env(spec: &mut Spec, vars: &[(&str, String)]) {
    let Some(mut p) = spec.process().clone() else { return };
    let mut env = p.env().clone().unwrap_or_default();
    for (k, v) in vars {
        let entry = format!("{k}={v}");
        match env.iter_mut().find(|e| e.split_once('=').is_some_and(|(n, _)| n == *k)) {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    }
    p.set_env(Some(env));
    spec.set_process(Some(p));
}

/// Copy the tree at `from` to `to` so that each directory lists its entries in
/// the reverse of the original's order, on a filesystem that lists entries in
/// creation order or its reverse (tmpfs). Owners, modes and access and
/// modification times are kept: only the listing order changes. Returns
/// whether the listing order differs from the original anywhere it can (a tree
/// whose directories hold at most one entry has only one order).
pub fn copy_reordered(from: &Path, to: &Path) -> io::Result<bool> {
    copy_tree(from, to, true)?;
    if listing_differs(from, to)? {
        return Ok(true);
    }
    // This filesystem lists newest first: creating in the original order
    // reverses the listing.
    fs::remove_dir_all(to)?;
    copy_tree(from, to, false)?;
    listing_differs(from, to)
}

fn names(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name())).collect()
}

fn listing_differs(a: &Path, b: &Path) -> io::Result<bool> {
    let meta = fs::symlink_metadata(a)?;
    if !meta.is_dir() {
        return Ok(false);
    }
    let (na, nb) = (names(a)?, names(b)?);
    if na.len() > 1 && na != nb {
        return Ok(true);
    }
    for n in &na {
        if listing_differs(&a.join(n), &b.join(n))? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn copy_tree(from: &Path, to: &Path, reverse: bool) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    let ft = meta.file_type();
    if ft.is_dir() {
        fs::create_dir(to)?;
        let mut entries = names(from)?;
        if reverse {
            entries.reverse();
        }
        for n in entries {
            copy_tree(&from.join(&n), &to.join(&n), reverse)?;
        }
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from)?, to)?;
    } else if ft.is_file() {
        fs::copy(from, to)?;
    } else {
        // Devices, fifos and sockets are not inputs a run reads as data.
        return Ok(());
    }
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    if !ft.is_symlink() {
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    // Last: a directory's times change as its entries are created.
    let time = |s: i64, ns: i64| nix::sys::time::TimeSpec::new(s, ns);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        to,
        &time(meta.atime(), meta.atime_nsec()),
        &time(meta.mtime(), meta.mtime_nsec()),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_with_all_and_refuse_unknown_names() {
        let v = Variation::parse_list(&["tz,hostname".into(), "tz".into()]).unwrap();
        assert_eq!(v, [Variation::Hostname, Variation::Tz]);
        assert_eq!(Variation::parse_list(&["all".into()]).unwrap().len(), ALL.len());
        let e = Variation::parse_list(&["time".into()]).unwrap_err().to_string();
        assert!(e.contains("--vary \"time\"") && e.contains("dirent-order"), "{e}");
        assert_eq!(label(&v), "hostname+tz");
    }

    #[test]
    fn spec_changes_are_the_ones_named() {
        let mut spec = Spec::default();
        let mut p = spec.process().clone().unwrap_or_default();
        p.set_env(Some(vec!["A=1".into(), "TZ=UTC".into(), "OMP_NUM_THREADS=4".into()]));
        spec.set_process(Some(p));
        let ctx = VaryContext {
            cpus: varied_cpus(&[], &[0, 1]),
            user: Some((1000, 1001)),
            locale: Some("C.utf8".into()),
            ..VaryContext::default()
        };
        let mut cpus = Vec::new();
        apply(&[Variation::Tz, Variation::EnvOrder, Variation::Cpus], &mut spec, &mut cpus, &ctx);
        let env = spec.process().as_ref().and_then(|p| p.env().clone()).unwrap_or_default();
        assert_eq!(
            env[..3],
            ["OMP_NUM_THREADS=1", &format!("TZ={VARIED_TZ}"), "A=1"],
            "reversed, then set in place"
        );
        assert!(env.contains(&"MKL_NUM_THREADS=1".to_string()));
        assert_eq!(cpus, [0]);
        apply(&[Variation::Aslr], &mut spec, &mut cpus, &ctx);
        assert!(spec.linux().as_ref().and_then(|l| l.personality().clone()).is_some());
        apply(&[Variation::Aslr, Variation::User, Variation::Umask], &mut spec, &mut cpus, &ctx);
        assert!(spec.linux().as_ref().and_then(|l| l.personality().clone()).is_none());
        let user = spec.process().as_ref().map(|p| p.user().clone()).unwrap_or_default();
        assert_eq!((user.uid(), user.gid(), user.umask()), (1000, 1001, Some(0o002)));
        apply(&[Variation::Locale], &mut spec, &mut cpus, &ctx);
        let env = spec.process().as_ref().and_then(|p| p.env().clone()).unwrap_or_default();
        assert!(env.contains(&"LC_ALL=C.utf8".to_string()), "{env:?}");
        assert_eq!(varied_cpus(&[0], &[0, 1]), [1]);
        assert_eq!(varied_cpus(&[0], &[0]), [0]);
    }

    #[test]
    fn a_reordered_copy_lists_differently_with_the_same_content() {
        let d = tempfile::tempdir_in("/dev/shm").unwrap();
        let src = d.path().join("src");
        fs::create_dir(&src).unwrap();
        for n in ["a", "b", "c", "d"] {
            fs::write(src.join(n), n).unwrap();
        }
        std::os::unix::fs::symlink("a", src.join("l")).unwrap();
        let old = nix::sys::time::TimeSpec::new(1_000_000_000, 123_456_789);
        for n in ["a", "l", "."] {
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &src.join(n),
                &old,
                &old,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .unwrap();
        }
        let copy = d.path().join("copy");
        assert!(copy_reordered(&src, &copy).unwrap());
        assert_ne!(names(&src).unwrap(), names(&copy).unwrap());
        for n in ["a", "b", "l", "."] {
            let (m, c) =
                (fs::symlink_metadata(src.join(n)).unwrap(), fs::symlink_metadata(copy.join(n)).unwrap());
            // Reading the original to copy it may change its access time: only
            // the modification time is a fact of the input.
            assert_eq!((c.mtime(), c.mtime_nsec()), (m.mtime(), m.mtime_nsec()), "mtime of {n}");
        }
        let (a, b) = (
            crate::record::files::digest_tree(&src).unwrap(),
            crate::record::files::digest_tree(&copy).unwrap(),
        );
        assert_eq!(a.digest, b.digest);
    }
}
