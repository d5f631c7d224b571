//! `linux.namespaces` and the user namespace's id maps, as runtime-spec 1.2
//! says: a listed type without a path is new, one with a path is joined, and a
//! type not listed is the runtime's own (a `hostPID` pod has no pid namespace
//! of its own).
//!
//! Two combinations are refused because exprun would have to change the host
//! to run them: no mount namespace (or exprun's own joined by path), since the
//! root filesystem is built with mounts and pivot_root in the container's mount
//! namespace; and a hostname set in exprun's own UTS namespace.

use std::path::PathBuf;

use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType};
use serde::{Deserialize, Serialize};

use super::host::Host;
use super::{Error, Result};

/// A namespace joined by path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    /// `mount`, `network`, `ipc`, `uts`, `pid` or `cgroup`.
    pub kind: String,
    /// Its CLONE_NEW* flag.
    pub flag: u64,
    /// The namespace file, e.g. /proc/<pid>/ns/net.
    pub path: PathBuf,
    /// (st_dev, st_ino) of the namespace checked here: spawn joins the file it
    /// opens only if it is this one, so a path swapped after planning (a
    /// symlink pointed at the host's mount namespace) is refused.
    pub id: (u64, u64),
}

/// One range of an id map: `size` ids from `container` inside are `host` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// First id inside.
    pub container: u32,
    /// First id outside.
    pub host: u32,
    /// Number of ids.
    pub size: u32,
}

/// A new user namespace and its maps. Who writes them: exprun as root, the
/// config's ranges as they are (`privileged`); a rootless exprun, through the
/// setuid helpers newuidmap and newgidmap, when it maps more than the
/// caller's own ids (from /etc/subuid and /etc/subgid); else init itself, which
/// may map the caller's own ids to root without privilege.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNs {
    /// The uid map.
    pub uids: Vec<IdRange>,
    /// The gid map.
    pub gids: Vec<IdRange>,
    /// exprun runs as root and writes the maps to /proc/<pid>/{uid,gid}_map.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
}

impl UserNs {
    /// Whether the maps need newuidmap/newgidmap (a rootless run mapping more
    /// than the caller's own ids).
    pub fn needs_helpers(&self) -> bool {
        !self.privileged && (self.uids.len() > 1 || self.gids.len() > 1)
    }

    /// Whether exprun (the parent) writes the maps, and init waits for them.
    pub fn parent_writes(&self) -> bool {
        self.privileged || self.needs_helpers()
    }

    /// Whether `uid`:`gid` exists inside.
    pub fn maps(&self, uid: u32, gid: u32) -> bool {
        self.host_ids(uid, gid).is_some()
    }

    /// The host's ids of `uid`:`gid` inside, when both are mapped.
    pub fn host_ids(&self, uid: u32, gid: u32) -> Option<(u32, u32)> {
        let host = |ranges: &[IdRange], id: u32| {
            ranges
                .iter()
                .find(|r| id >= r.container && u64::from(id) < u64::from(r.container) + u64::from(r.size))
                .map(|r| r.host + (id - r.container))
        };
        Some((host(&self.uids, uid)?, host(&self.gids, gid)?))
    }

    /// The text of a uid_map or gid_map file: one `inside outside count` line a range.
    pub fn map_file(ranges: &[IdRange]) -> String {
        ranges.iter().map(|r| format!("{} {} {}\n", r.container, r.host, r.size)).collect()
    }
}

/// The namespaces of a container, resolved.
#[derive(Debug, Default)]
pub struct Namespaces {
    /// CLONE_NEW* bits of the namespaces made at clone.
    pub clone_flags: u64,
    /// Namespaces joined by path, the mount namespace last.
    pub joins: Vec<Join>,
    /// A new cgroup namespace (made after joining the cgroup).
    pub cgroup_ns: bool,
    /// A new user namespace.
    pub user_ns: Option<UserNs>,
}

impl Namespaces {
    fn has(&self, t: LinuxNamespaceType) -> bool {
        self.made(t) || self.joined(t).is_some()
    }

    /// Whether the container gets a new namespace of type `t`.
    pub fn made(&self, t: LinuxNamespaceType) -> bool {
        match t {
            LinuxNamespaceType::Cgroup => self.cgroup_ns,
            LinuxNamespaceType::User => self.user_ns.is_some(),
            t => self.clone_flags & t as u64 != 0,
        }
    }

    fn joined(&self, t: LinuxNamespaceType) -> Option<&Join> {
        self.joins.iter().find(|j| j.flag == t as u64)
    }

    /// Whether the container's processes are in a pid namespace of their own.
    pub fn own_pid(&self) -> bool {
        self.has(LinuxNamespaceType::Pid)
    }
}

/// The field a namespace type is written as in config.json.
fn type_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

/// The `/proc/self/ns` file of a namespace type.
pub(super) fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Network => "net",
        t => type_name(t),
    }
}

/// Whether the namespace `id` is the one of type `t` that exprun itself is
/// in, or that of pid 1 (the host's, when exprun runs in namespaces of its own).
fn is_host(host: &Host, t: LinuxNamespaceType, id: (u64, u64)) -> bool {
    host.own_namespaces.get(proc_name(t)).is_some_and(|ids| ids.contains(&id))
}

/// That the file named in a namespace entry is a namespace file of type `t`
/// (what /proc/<pid>/ns/<name> links to), from `name`, the kernel's name of the
/// file opened (`mnt:[4026531841]` for a mount namespace), which says both.
/// Anything else (a regular file, a directory, /proc itself, another type's
/// namespace) would only fail in `setns` after the clone, without a name.
/// spawn checks the descriptor it joins the same way, so a path swapped after
/// planning is refused there too.
pub fn check_namespace_name(t: LinuxNamespaceType, name: &str) -> std::io::Result<()> {
    let want = proc_name(t);
    let is_ns = |n: &str| {
        n.strip_suffix(']')
            .and_then(|n| n.split_once(":["))
            .is_some_and(|(_, ino)| !ino.is_empty() && ino.bytes().all(|b| b.is_ascii_digit()))
    };
    if is_ns(name) && name.starts_with(&format!("{want}:[")) {
        return Ok(());
    }
    let what = if is_ns(name) {
        format!("a namespace of another type ({name})")
    } else {
        format!("not a namespace ({name})")
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("is {what}; name a {} namespace file, such as /proc/<pid>/ns/{want}", type_name(t)),
    ))
}

/// Resolve `linux.namespaces` (and the id maps of a new user namespace), and
/// refuse what cannot be run without touching the host. `hostname`: whether the
/// config sets one.
pub fn resolve(linux: &Linux, hostname: bool, host: &Host) -> Result<Namespaces> {
    let mut ns = Namespaces::default();
    let mut seen = Vec::new();
    for (i, entry) in linux.namespaces().iter().flatten().enumerate() {
        let t = entry.typ();
        let kind = type_name(t);
        if seen.contains(&t) {
            return Err(Error::Config(format!(
                "linux.namespaces[{i}]: the {kind} namespace is listed twice; list each type once"
            )));
        }
        seen.push(t);
        if let Some(path) = entry.path() {
            if matches!(t, LinuxNamespaceType::User | LinuxNamespaceType::Time) {
                return Err(Error::Unsupported(format!(
                    "linux.namespaces[{i}]: joining an existing {kind} namespace by path is not supported yet"
                )));
            }
            let file = host
                .namespace_file(path)
                .and_then(|file| check_namespace_name(t, &file.name).map(|()| file))
                .map_err(|source| Error::Source {
                    option: format!("linux.namespaces[{i}] ({kind}) path"),
                    path: path.clone(),
                    source,
                })?;
            if t == LinuxNamespaceType::Mount && is_host(host, t, file.id) {
                return Err(Error::Config(format!(
                    "linux.namespaces[{i}]: {} is exprun's own (or pid 1's) mount namespace; the \
                     container's root filesystem is built with mounts and pivot_root in its mount \
                     namespace, which would change the host's. Leave out the path for a new one, or name \
                     another",
                    path.display()
                )));
            }
            ns.joins.push(Join { kind: kind.to_string(), flag: t as u64, path: path.clone(), id: file.id });
            continue;
        }
        match t {
            LinuxNamespaceType::User => {
                ns.user_ns = Some(if host.process.euid == 0 {
                    privileged_maps(linux)?
                } else {
                    rootless_maps(linux, host.process.euid, host.process.egid)?
                });
                ns.clone_flags |= t as u64;
            }
            LinuxNamespaceType::Time => {
                return Err(Error::Unsupported("time namespaces are not supported yet".into()))
            }
            LinuxNamespaceType::Cgroup => ns.cgroup_ns = true,
            t => ns.clone_flags |= t as u64,
        }
    }
    // setns into a mount namespace moves init's root and cwd: after the others.
    ns.joins.sort_by_key(|j| j.flag == LinuxNamespaceType::Mount as u64);

    if !ns.has(LinuxNamespaceType::Mount) {
        return Err(Error::Config(
            "linux.namespaces: no mount namespace is listed, so the container would share exprun's, and \
             building its root filesystem (mounts, pivot_root) would change the host's mounts; add \
             {\"type\": \"mount\"}"
                .into(),
        ));
    }
    if ns.user_ns.is_some() {
        if let Some(j) = ns.joins.first() {
            return Err(Error::Unsupported(format!(
                "linux.namespaces: joining the {} namespace by path together with a new user namespace is \
                 not supported yet (init runs in the new user namespace, which has no privilege over \
                 namespaces it does not own); make them new, or leave out the user namespace",
                j.kind
            )));
        }
    }
    if hostname {
        match ns.joined(LinuxNamespaceType::Uts) {
            _ if ns.made(LinuxNamespaceType::Uts) => {}
            Some(j) if is_host(host, LinuxNamespaceType::Uts, j.id) => {
                return Err(Error::Process {
                    field: "hostname",
                    why: format!(
                        "the UTS namespace joined by path ({}) is exprun's own (or pid 1's): setting the \
                         hostname there would change the host's; leave out the hostname or the path",
                        j.path.display()
                    ),
                })
            }
            Some(_) => {}
            None => {
                return Err(Error::Process {
                    field: "hostname",
                    why: "setting a hostname needs a UTS namespace of the container's own (new, or \
                          joined by path); add {\"type\": \"uts\"} to linux.namespaces"
                        .into(),
                })
            }
        }
    }
    Ok(ns)
}

fn ranges(maps: &Option<Vec<LinuxIdMapping>>) -> Vec<IdRange> {
    maps.iter()
        .flatten()
        .map(|m| IdRange { container: m.container_id(), host: m.host_id(), size: m.size() })
        .collect()
}

/// The most lines a uid_map or gid_map takes (linux/user_namespace.h,
/// UID_GID_MAP_MAX_EXTENTS).
const MAX_RANGES: usize = 340;

/// The config's maps as they are, for exprun as root to write: checked as the
/// kernel would check them, so a bad map is named before anything starts.
fn privileged_maps(linux: &Linux) -> Result<UserNs> {
    let check = |field: &str, r: Vec<IdRange>| -> Result<Vec<IdRange>> {
        let bad = |why: String| Error::Config(format!("linux.{field}: {why}"));
        if r.is_empty() {
            return Err(bad("a new user namespace needs at least one range; add one (e.g. \
                 {\"containerID\": 0, \"hostID\": 100000, \"size\": 65536})"
                .into()));
        }
        if r.len() > MAX_RANGES {
            return Err(bad(format!("{} ranges, more than the kernel's {MAX_RANGES}", r.len())));
        }
        let end = |start: u32, size: u32| u64::from(start) + u64::from(size);
        if !r.iter().any(|m| m.container == 0) {
            return Err(bad(
                "no range maps id 0 inside: the container's init builds the root filesystem as \
                 root in the user namespace, so root must be mapped"
                    .into(),
            ));
        }
        for (i, a) in r.iter().enumerate() {
            if a.size == 0 {
                return Err(bad(format!("[{i}] has size 0")));
            }
            if end(a.container, a.size) > u64::from(u32::MAX) || end(a.host, a.size) > u64::from(u32::MAX) {
                return Err(bad(format!("[{i}] runs past the last id ({})", u32::MAX - 1)));
            }
        }
        if let Some((i, j)) = overlapping(&r) {
            return Err(bad(format!("[{i}] overlaps [{j}]; each id may be mapped once")));
        }
        Ok(r)
    };
    Ok(UserNs {
        uids: check("uidMappings", ranges(linux.uid_mappings()))?,
        gids: check("gidMappings", ranges(linux.gid_mappings()))?,
        privileged: true,
    })
}

/// The first two ranges `(later, earlier)` that share an id inside or on the
/// host, which the kernel refuses in a uid_map or gid_map.
fn overlapping(r: &[IdRange]) -> Option<(usize, usize)> {
    let end = |start: u32, size: u32| u64::from(start) + u64::from(size);
    r.iter().enumerate().find_map(|(i, a)| {
        r.iter().enumerate().take(i).find_map(|(j, b)| {
            let overlap = |x: u32, y: u32| u64::from(x) < end(y, b.size) && u64::from(y) < end(x, a.size);
            (overlap(a.container, b.container) || overlap(a.host, b.host)).then_some((i, j))
        })
    })
}

/// A rootless run's maps: container root is the caller's own uid and gid,
/// optionally followed by ranges from 1 up for newuidmap and newgidmap to check
/// against /etc/subuid and /etc/subgid.
fn rootless_maps(linux: &Linux, euid: u32, egid: u32) -> Result<UserNs> {
    let check = |maps: Vec<IdRange>, own: u32, what: &str| -> Result<Vec<IdRange>> {
        let root_is_own = maps.first().is_some_and(|m| m.container == 0 && m.host == own && m.size == 1);
        let rest_from_one = maps.iter().skip(1).all(|m| m.container >= 1 && m.size >= 1);
        if let Some((i, j)) = overlapping(&maps).filter(|_| root_is_own && rest_from_one) {
            let m = &maps[i];
            let last = u64::from(m.host) + u64::from(m.size) - 1;
            return Err(Error::Config(format!(
                "linux.{what}: [{i}] (host ids {}-{last}) overlaps [{j}], and the kernel maps each id once \
                 (newuidmap and newgidmap would fail). `exprun run` takes these ranges from the caller's \
                 lines in /etc/subuid and /etc/subgid: give the caller ranges that hold neither its own \
                 id ({own}) nor each other's ids",
                m.host
            )));
        }
        if root_is_own && rest_from_one {
            Ok(maps)
        } else {
            Err(Error::Unsupported(format!(
                "a rootless user namespace whose {what} do not map 0 to the caller's own id ({own}, size 1) \
                 first is not supported yet"
            )))
        }
    };
    Ok(UserNs {
        uids: check(ranges(linux.uid_mappings()), euid, "uidMappings")?,
        gids: check(ranges(linux.gid_mappings()), egid, "gidMappings")?,
        privileged: false,
    })
}

/// The config's `domainname` (runtime-spec 1.1), set in the container's new
/// UTS namespace as the `kernel.domainname` sysctl; anywhere else it would be
/// the host's.
pub(super) fn domainname(spec: &oci_spec::runtime::Spec, new_uts: bool) -> Result<Option<String>> {
    let Some(d) = spec.domainname().clone().filter(|d| !d.is_empty()) else { return Ok(None) };
    let bad = |why: String| Err(Error::Process { field: "domainname", why });
    if !new_uts {
        return bad("setting a domain name needs a new UTS namespace of the container's own; add \
                    {\"type\": \"uts\"} to linux.namespaces, without a path"
            .into());
    }
    // The kernel's limit (__NEW_UTS_LEN); a longer name would be cut short.
    if d.len() > 64 || d.bytes().any(|b| b.is_ascii_control()) {
        return bad(format!("{d:?} is not a domain name of at most 64 bytes without control characters"));
    }
    Ok(Some(d))
}

/// The config's sysctls, each checked to belong to a namespace the container has
/// of its own: anything else would change the host.
pub(super) fn sysctls(
    linux: &oci_spec::runtime::Linux,
    net: bool,
    ipc: bool,
    uts: bool,
) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = linux.sysctl().clone().unwrap_or_default().into_iter().collect();
    out.sort();
    for (key, _) in &out {
        let ok = if key.starts_with("net.") {
            net
        } else if [
            "kernel.msgmax",
            "kernel.msgmnb",
            "kernel.msgmni",
            "kernel.sem",
            "kernel.shmall",
            "kernel.shmmax",
            "kernel.shmmni",
            "kernel.shm_rmid_forced",
        ]
        .contains(&key.as_str())
            || key.starts_with("fs.mqueue.")
        {
            ipc
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            uts
        } else {
            false
        };
        if !ok || key.contains("..") || key.contains('/') {
            return Err(Error::Process {
                field: "linux.sysctl",
                why: format!(
                    "{key} is not in a namespace of the container's own; setting it would change the host"
                ),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(json: serde_json::Value) -> Linux {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn overlapping_or_empty_maps_are_refused_by_field() {
        let m = |uids: serde_json::Value| {
            privileged_maps(&linux(serde_json::json!({
                "uidMappings": uids,
                "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]
            })))
        };
        let ok = m(serde_json::json!([
            {"containerID": 0, "hostID": 100000, "size": 1000},
            {"containerID": 1000, "hostID": 300000, "size": 10}
        ]))
        .unwrap();
        assert_eq!(UserNs::map_file(&ok.uids), "0 100000 1000\n1000 300000 10\n");
        let err = m(serde_json::json!([
            {"containerID": 0, "hostID": 100000, "size": 1000},
            {"containerID": 999, "hostID": 300000, "size": 10}
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("linux.uidMappings: [1] overlaps [0]"), "{err}");
        let err = m(serde_json::json!([])).unwrap_err().to_string();
        assert!(err.contains("linux.uidMappings: a new user namespace needs at least one range"), "{err}");
    }

    #[test]
    fn a_rootless_map_whose_subordinate_range_holds_the_callers_id_is_refused() {
        let m = |uids: serde_json::Value| {
            rootless_maps(
                &linux(serde_json::json!({
                    "uidMappings": uids,
                    "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]
                })),
                1000,
                1000,
            )
        };
        let ok = m(serde_json::json!([
            {"containerID": 0, "hostID": 1000, "size": 1},
            {"containerID": 1, "hostID": 100000, "size": 65536}
        ]))
        .unwrap();
        assert_eq!(UserNs::map_file(&ok.uids), "0 1000 1\n1 100000 65536\n");
        let err = m(serde_json::json!([
            {"containerID": 0, "hostID": 1000, "size": 1},
            {"containerID": 1, "hostID": 995, "size": 10}
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("linux.uidMappings: [1] (host ids 995-1004) overlaps [0]")
                && err.contains("/etc/subuid")
                && err.contains("its own id (1000)"),
            "{err}"
        );
    }

    #[test]
    fn a_joined_namespace_must_be_a_namespace_file_of_its_type() {
        let t = LinuxNamespaceType::Mount;
        check_namespace_name(t, "mnt:[4026531841]").unwrap();
        for (name, says) in [
            ("net:[4026531840]", "a namespace of another type (net:["),
            ("/proc", "not a namespace (/proc)"),
            ("/proc/1/status", "not a namespace (/proc/"),
            ("mnt:[]", "not a namespace (mnt:[])"),
        ] {
            let err = check_namespace_name(t, name).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains("/proc/<pid>/ns/mnt"), "{name}: {err}");
        }
    }
}
