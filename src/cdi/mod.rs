//! CDI, the Container Device Interface: devices named `vendor.com/class=name`,
//! described by spec files (JSON or YAML) an administrator or a vendor's tool
//! (`nvidia-ctk cdi generate`) puts in `/etc/cdi` and `/var/run/cdi`.
//!
//! [`resolve`] reads the spec directories, checks that no user but root and the
//! caller can change what they hold (their hooks run on the host), finds each
//! named device and returns its container edits, merged, with the host numbers
//! of every device node filled in, and for the record each device's spec file
//! and its sha256.

mod parse;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use parse::{SpecFile, YAML_EXTENSIONS};

/// Where CDI specs are looked for, lowest priority first: a device in
/// `/var/run/cdi` wins over one of the same name in `/etc/cdi`.
pub const DEFAULT_SPEC_DIRS: &[&str] = &["/etc/cdi", "/var/run/cdi"];

/// A CDI error names the spec file (and field) or the directories searched.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A device name is not `vendor.com/class=name`.
    #[error("--device {name:?}: {why}")]
    Name {
        /// The name as given.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// No spec in the directories has the device.
    #[error("CDI device {name:?} is in no CDI spec of {dirs}{known}")]
    Unknown {
        /// The device's name.
        name: String,
        /// The directories searched.
        dirs: String,
        /// The devices of that kind there are, as a hint.
        known: String,
    },
    /// A spec file or directory cannot be read.
    #[error("CDI spec {}: {op}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A spec file is malformed.
    #[error("CDI spec {}: {field}: {why}", path.display())]
    Spec {
        /// The file.
        path: PathBuf,
        /// The field, as a path (`devices[0].containerEdits.mounts[1].containerPath`).
        field: String,
        /// What is wrong.
        why: String,
    },
    /// A spec file or directory someone other than root and the caller can write.
    #[error(
        "CDI spec {}: {why}; its hooks would run on the host, so it must be owned by root (or you) and \
         writable by no one else (chmod go-w, chown root)",
        path.display()
    )]
    Unsafe {
        /// The file or directory.
        path: PathBuf,
        /// Who can write it.
        why: String,
    },
}

/// A mount a CDI device adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The host path.
    pub host_path: PathBuf,
    /// The path inside the container.
    pub container_path: PathBuf,
    /// Mount options, as the spec gives them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// The mount type [default: bind].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fstype: Option<String>,
}

/// A hook a CDI device adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    /// The OCI hook kind: `prestart`, `createRuntime`, `createContainer`, `startContainer`.
    pub kind: String,
    /// The program, a host path.
    pub path: PathBuf,
    /// Its argv.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Its environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Seconds before it is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

/// What the named CDI devices do to the container, merged in the order named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edits {
    /// `NAME=VALUE` variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Device nodes, with the host's numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_nodes: Vec<crate::spec::devices::DeviceRequest>,
    /// Mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// OCI hooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<Hook>,
    /// Supplementary groups of the process.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
}

impl Edits {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == Edits::default()
    }

    fn extend(&mut self, other: Edits) {
        self.env.extend(other.env);
        self.device_nodes.extend(other.device_nodes);
        self.mounts.extend(other.mounts);
        self.hooks.extend(other.hooks);
        for g in other.additional_gids {
            if !self.additional_gids.contains(&g) {
                self.additional_gids.push(g);
            }
        }
    }
}

/// A CDI device as the record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// `vendor.com/class=name`.
    pub name: String,
    /// The spec file it came from.
    pub spec: PathBuf,
    /// The sha256 of that file, hex.
    pub sha256: String,
}

/// The named devices, resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Each device, for the record.
    pub devices: Vec<Device>,
    /// Their edits, merged (a spec's own edits once, before its devices').
    pub edits: Edits,
}

/// Whether `s` is a CDI name (`vendor.com/class=name`) rather than a host path.
pub fn is_name(s: &str) -> bool {
    !s.starts_with('/') && s.split_once('=').is_some_and(|(kind, _)| kind.contains('/'))
}

/// Split `vendor.com/class=name` into its kind and name, checked as the CDI
/// spec says: a vendor is a domain-like name, a class and a device name letters,
/// digits, `-`, `_` (and `.`, `:` in device names).
pub fn split_name(name: &str) -> Result<(&str, &str), Error> {
    let bad = |why: &str| Error::Name { name: name.into(), why: why.into() };
    let (kind, dev) = name.split_once('=').ok_or_else(|| bad("a CDI device is vendor.com/class=name"))?;
    check_kind(kind).map_err(|w| bad(&w))?;
    let ok = dev.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && dev.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if !ok {
        return Err(bad(
            "a device name is letters, digits, '-', '_', '.' and ':', starting with a letter or digit",
        ));
    }
    Ok((kind, dev))
}

/// A CDI kind: `vendor.com/class`.
pub fn check_kind(kind: &str) -> Result<(), String> {
    let (vendor, class) = kind.split_once('/').ok_or("a CDI kind is vendor.com/class")?;
    let label = |s: &str, extra: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    };
    if !label(vendor, "-_.") {
        return Err(format!("vendor {vendor:?} is not a domain-like name (letters, digits, '-', '_', '.')"));
    }
    if !label(class, "-_") {
        return Err(format!("class {class:?} is not letters, digits, '-' and '_'"));
    }
    Ok(())
}

/// `--gpus all|N|device=ID,...`: docker's spelling of `nvidia.com/gpu=...`.
pub fn gpus(s: &str) -> Result<Vec<String>, Error> {
    let bad = |why: &str| Error::Name { name: format!("--gpus {s}"), why: why.into() };
    let name = |id: &str| format!("nvidia.com/gpu={id}");
    let s = s.trim().trim_matches('"');
    if s == "all" {
        return Ok(vec![name("all")]);
    }
    if let Some(ids) = s.strip_prefix("device=") {
        let ids: Vec<&str> = ids.split(',').map(str::trim).filter(|i| !i.is_empty()).collect();
        if ids.is_empty() {
            return Err(bad("device= names no GPU; give device=0,1 or device=GPU-UUID"));
        }
        return ids.iter().map(|i| split_name(&name(i)).map(|_| name(i))).collect();
    }
    match s.parse::<u32>() {
        Ok(n) if n > 0 => Ok((0..n).map(|i| name(&i.to_string())).collect()),
        _ => Err(bad("give all, a number of GPUs, or device=ID,... (an index or a UUID)")),
    }
}

/// Resolve `names` from the specs in `dirs` (lowest priority first). `caller`
/// is the uid that may own spec files besides root.
pub fn resolve(dirs: &[PathBuf], names: &[String], caller: u32) -> Result<Resolved, Error> {
    let mut out = Resolved::default();
    if names.is_empty() {
        return Ok(out);
    }
    let specs = load(dirs, caller)?;
    let mut used_spec: Vec<PathBuf> = Vec::new();
    for name in names {
        let (kind, dev) = split_name(name)?;
        let of_kind: Vec<&SpecFile> = specs.iter().filter(|s| s.kind == kind).collect();
        let named: Vec<(&SpecFile, &parse::DeviceSpec)> = of_kind
            .iter()
            .rev()
            .find_map(|s| s.devices.iter().find(|d| d.name == dev).map(|d| (*s, d)))
            .into_iter()
            .collect();
        // `all` is the spec's own device of that name when it has one (the
        // NVIDIA toolkit's specs do: their other devices name each GPU twice,
        // by index and by UUID); otherwise every device of the kind.
        let found = if named.is_empty() && dev == "all" {
            of_kind.iter().flat_map(|s| s.devices.iter().map(move |d| (*s, d))).collect()
        } else {
            named
        };
        if found.is_empty() {
            let mut known: Vec<&str> =
                of_kind.iter().flat_map(|s| s.devices.iter().map(|d| d.name.as_str())).collect();
            known.sort_unstable();
            known.dedup();
            return Err(Error::Unknown {
                name: name.clone(),
                dirs: dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
                known: if known.is_empty() {
                    format!(" (no spec there has kind {kind})")
                } else {
                    format!(" (kind {kind} has: {})", known.join(", "))
                },
            });
        }
        for (spec, d) in found {
            if !used_spec.contains(&spec.path) {
                used_spec.push(spec.path.clone());
                out.edits.extend(spec.edits.clone());
            }
            out.edits.extend(d.edits.clone());
            out.devices.push(Device {
                name: format!("{kind}={}", d.name),
                spec: spec.path.clone(),
                sha256: spec.sha256.clone(),
            });
        }
    }
    Ok(out)
}

/// Every spec of `dirs`, a later directory's device replacing an earlier one's
/// of the same name.
fn load(dirs: &[PathBuf], caller: u32) -> Result<Vec<SpecFile>, Error> {
    let mut specs: Vec<SpecFile> = Vec::new();
    for dir in dirs {
        let meta = match std::fs::metadata(dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(Error::Io { path: dir.clone(), op: "reading the directory", source }),
        };
        check_owner(dir, &meta, caller)?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| Error::Io { path: dir.clone(), op: "listing the directory", source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| e == "json" || YAML_EXTENSIONS.contains(&e))
            })
            .collect();
        files.sort();
        let mut here: BTreeMap<(String, String), PathBuf> = BTreeMap::new();
        for path in files {
            let bytes = read_spec(&path, caller)?;
            let spec = parse::spec_file(&path, &bytes)?;
            for d in &spec.devices {
                let key = (spec.kind.clone(), d.name.clone());
                if let Some(other) = here.insert(key, path.clone()) {
                    return Err(Error::Spec {
                        path: path.clone(),
                        field: "devices".into(),
                        why: format!(
                            "device {}={} is also in {}, in the same directory; keep it in one file",
                            spec.kind,
                            d.name,
                            other.display()
                        ),
                    });
                }
            }
            // A device of a higher-priority directory replaces the earlier one.
            for earlier in specs.iter_mut().filter(|s| s.kind == spec.kind) {
                earlier.devices.retain(|d| !spec.devices.iter().any(|n| n.name == d.name));
            }
            specs.push(spec);
        }
    }
    Ok(specs)
}

/// A spec file or directory must be root's or the caller's, and writable by
/// no one else.
/// The bytes of spec file `path`, a symlink followed (NixOS and the GPU
/// operator link specs into place): the owner and mode are checked on the
/// opened file, so the bytes read are those of the file checked. Anything but
/// a regular file is an error naming it, never skipped.
/// The largest CDI spec read: a generated spec for a node of eight GPUs is
/// tens of KB; a file past this is not a device list, and is not read whole.
const MAX_SPEC_BYTES: u64 = 4 << 20;

fn read_spec(path: &Path, caller: u32) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |op: &'static str| move |source| Error::Io { path: path.to_path_buf(), op, source };
    // O_NONBLOCK: a FIFO named like a spec does not wait for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io("opening"))?;
    let meta = file.metadata().map_err(io("reading"))?;
    if !meta.is_file() {
        return Err(io("reading")(std::io::Error::other(
            "not a regular file (nor a symlink to one); remove it from the CDI directory",
        )));
    }
    check_owner(path, &meta, caller)?;
    let too_large = || {
        io("reading")(std::io::Error::other(format!(
            "larger than {} MiB, the most exprun reads of a CDI spec; remove it from the CDI directory",
            MAX_SPEC_BYTES >> 20
        )))
    };
    if meta.len() > MAX_SPEC_BYTES {
        return Err(too_large());
    }
    // Bounded as well: the file may grow after the check.
    let mut bytes = Vec::new();
    file.take(MAX_SPEC_BYTES + 1).read_to_end(&mut bytes).map_err(io("reading"))?;
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

fn check_owner(path: &Path, meta: &std::fs::Metadata, caller: u32) -> Result<(), Error> {
    let unsafe_ = |why: String| Err(Error::Unsafe { path: path.to_path_buf(), why });
    if meta.uid() != 0 && meta.uid() != caller {
        return unsafe_(format!("it is owned by uid {}", meta.uid()));
    }
    if meta.mode() & 0o002 != 0 {
        return unsafe_("anyone can write it".into());
    }
    if meta.mode() & 0o020 != 0 && meta.gid() != 0 {
        return unsafe_(format!("group {} can write it", meta.gid()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_past_the_size_limit_is_refused_without_being_read() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("huge.json");
        // Sparse: reading it whole would allocate 5 MiB of zeros.
        std::fs::File::create(&path).unwrap().set_len(MAX_SPEC_BYTES + 1).unwrap();
        let caller = nix::unistd::geteuid().as_raw();
        let e = read_spec(&path, caller).unwrap_err().to_string();
        assert!(e.contains("huge.json") && e.contains("larger than 4 MiB"), "{e}");
        std::fs::File::create(&path).unwrap().set_len(MAX_SPEC_BYTES).unwrap();
        assert_eq!(read_spec(&path, caller).unwrap().len() as u64, MAX_SPEC_BYTES);
    }

    fn spec_dir(json: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("gpu.json"), json).unwrap();
        d
    }

    #[test]
    fn all_is_the_specs_own_all_device_when_it_has_one() {
        let node = |n: &str| format!(r#"{{"path": "/dev/fakegpu{n}", "hostPath": "/dev/null"}}"#);
        let dev = |name: &str, nodes: &[&str]| {
            let nodes: Vec<String> = nodes.iter().map(|n| node(n)).collect();
            format!(r#"{{"name": "{name}", "containerEdits": {{"deviceNodes": [{}]}}}}"#, nodes.join(","))
        };
        let uid = nix::unistd::geteuid().as_raw();
        let names = |r: &Resolved| r.devices.iter().map(|d| d.name.clone()).collect::<Vec<_>>();
        // As nvidia-ctk writes it: each GPU by index and by UUID, and `all`.
        let with_all = spec_dir(&format!(
            r#"{{"cdiVersion": "0.6.0", "kind": "nvidia.com/gpu", "devices": [{}, {}, {}]}}"#,
            dev("0", &["0"]),
            dev("GPU-1234", &["0"]),
            dev("all", &["0"])
        ));
        let r = resolve(&[with_all.path().into()], &["nvidia.com/gpu=all".into()], uid).unwrap();
        assert_eq!(names(&r), ["nvidia.com/gpu=all"]);
        assert_eq!(r.edits.device_nodes.len(), 1, "one node, not one per name of the GPU");
        // Without one: every device of the kind.
        let without = spec_dir(&format!(
            r#"{{"cdiVersion": "0.6.0", "kind": "example.com/gpu", "devices": [{}, {}]}}"#,
            dev("0", &["0"]),
            dev("1", &["1"])
        ));
        let r = resolve(&[without.path().into()], &["example.com/gpu=all".into()], uid).unwrap();
        assert_eq!(names(&r), ["example.com/gpu=0", "example.com/gpu=1"]);
    }
}
