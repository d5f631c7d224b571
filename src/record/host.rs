//! Facts about the host that can change a run's result, read from /proc and uname.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// The host a run ran on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// `uname -r`.
    pub kernel_release: String,
    /// `uname -v`.
    pub kernel_version: String,
    /// `uname -m`.
    pub arch: String,
    /// The first `model name` of /proc/cpuinfo.
    pub cpu_model: Option<String>,
    /// sha256 of the sorted CPU flags, so a changed instruction set shows.
    pub cpu_flags_digest: Option<Digest>,
    /// Online CPUs.
    pub cpus_online: u64,
    /// MemTotal, bytes.
    pub memory_bytes: Option<u64>,
    /// `PRETTY_NAME` of /etc/os-release.
    pub os: Option<String>,
    /// `v1`, `v2`, `hybrid` or `none`.
    pub cgroup_mode: String,
    /// Mounted cgroup controllers.
    pub cgroup_controllers: Vec<String>,
}

/// Read the host's facts; missing files give `None`, never an error.
pub fn facts(cgroups: &crate::cgroups::CgroupHost) -> HostFacts {
    let uts = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uts.as_ref().map(|u| f(u).to_string_lossy().into_owned()).unwrap_or_default()
    };
    let cpuinfo = first_cpu(Path::new("/proc/cpuinfo"));
    let cpu_value = |key: &str| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let cpu_flags_digest = cpu_value("flags").map(|f| {
        let mut flags: Vec<&str> = f.split_whitespace().collect();
        flags.sort_unstable();
        Digest::of_bytes(flags.join(" ").as_bytes())
    });
    let memory_bytes = fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
    });
    let online = nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN).ok().flatten().unwrap_or(0);
    let (cgroup_mode, cgroup_controllers) = cgroups.describe();
    HostFacts {
        kernel_release: field(|u| u.release()),
        kernel_version: field(|u| u.version()),
        arch: field(|u| u.machine()),
        cpu_model: cpu_value("model name"),
        cpu_flags_digest,
        cpus_online: online.max(0) as u64,
        memory_bytes,
        os: os_release(Path::new("/etc/os-release")),
        cgroup_mode,
        cgroup_controllers,
    }
}

/// The first processor's lines of a cpuinfo file (up to the first blank line):
/// all the facts need. The kernel formats /proc/cpuinfo as it is read, every
/// CPU's block in turn; on a host with hundreds of CPUs the whole file is
/// hundreds of KB of work per run.
fn first_cpu(path: &Path) -> String {
    use std::io::BufRead;
    let Ok(file) = fs::File::open(path) else { return String::new() };
    let mut block = String::new();
    for line in std::io::BufReader::with_capacity(4096, file).lines() {
        match line {
            Ok(l) if !l.trim().is_empty() => {
                block.push_str(&l);
                block.push('\n');
            }
            _ => break,
        }
    }
    block
}

fn os_release(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string())
}

/// Online CPUs of this host.
pub fn cpus_online() -> usize {
    let n = nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN).ok().flatten().unwrap_or(0);
    n.max(1) as usize
}

/// The CPUs exprun may run on (its affinity mask), in order.
pub fn allowed_cpus() -> Vec<usize> {
    let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) else {
        return (0..cpus_online()).collect();
    };
    (0..nix::sched::CpuSet::count()).filter(|c| set.is_set(*c).unwrap_or(false)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_of_this_host_are_filled_in() {
        let host = crate::cgroups::CgroupHost::parse("", "");
        let f = facts(&host);
        assert!(!f.kernel_release.is_empty());
        assert_eq!(f.arch, std::env::consts::ARCH);
        assert!(f.cpus_online >= 1);
        assert!(f.memory_bytes.unwrap_or(0) > 0);
    }

    #[test]
    fn only_the_first_cpu_is_read_and_the_facts_are_those_of_the_whole_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("cpuinfo");
        let two = "processor\t: 0\nmodel name\t: A\nflags\t\t: b a\n\nprocessor\t: 1\nmodel name\t: B\nflags\t\t: c\n\n";
        fs::write(&path, two).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first_cpu(&path), "processor\t: 0\nmodel name\t: A\nflags\t\t: b a\n");
        assert_eq!(first_cpu(&dir.path().join("missing")), "");
        // This host's facts: the first model name and flags of the whole file.
        let whole = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let first = |key: &str| {
            whole
                .lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == key).map(|(_, v)| v.trim()))
        };
        let f = facts(&crate::cgroups::CgroupHost::parse("", ""));
        assert_eq!(f.cpu_model.as_deref(), first("model name"));
        let mut flags: Vec<&str> = first("flags").unwrap_or_default().split_whitespace().collect();
        flags.sort_unstable();
        let want = first("flags").map(|_| Digest::of_bytes(flags.join(" ").as_bytes()));
        assert_eq!(f.cpu_flags_digest, want);
    }
}
