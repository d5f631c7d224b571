//! OCI bundles: `config.json` and the root filesystem beside it, as containerd's
//! shim and CRI-O hand them to a runc-compatible runtime.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::Error;

/// Read `<bundle>/config.json`, with `root.path` made absolute against the bundle.
pub fn load(bundle: &Path) -> Result<Spec, Error> {
    let bundle = absolute(bundle)?;
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|e| Error::Bundle { path: path.clone(), why: e.to_string() })?;
    let mut spec: Spec = serde_json::from_slice(&text).map_err(|e| Error::Bundle {
        path: path.clone(),
        why: format!("not a valid OCI runtime config: {e}"),
    })?;
    let Some(root) = spec.root().clone() else {
        return Err(Error::Bundle { path, why: "root: missing".into() });
    };
    let mut root = root;
    if !root.path().is_absolute() {
        root.set_path(bundle.join(root.path()));
    }
    spec.set_root(Some(root));
    Ok(spec)
}

fn absolute(p: &Path) -> Result<PathBuf, Error> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|e| Error::Bundle {
        path: p.to_path_buf(),
        why: format!("cannot read the current directory: {e}"),
    })?;
    Ok(cwd.join(p))
}

/// A container id as runc accepts it: letters, digits, `_`, `+`, `-`, `.`, not `.`
/// or `..`, at most 1024 characters.
pub fn check_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Option {
            option: "container id",
            value: id.into(),
            why: "use letters, digits, '_', '+', '-' and '.' (not '.' or '..')".into(),
        })
    }
}

/// A cgroupsPath in systemd's `slice:prefix:name` form (`--systemd-cgroup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdCgroupsPath {
    /// The slice the scope goes into (`system.slice` when left empty).
    pub slice: String,
    /// The scope unit: `prefix-name.scope`.
    pub unit: String,
    /// The cgroup path systemd gives that scope: `/a.slice/a-b.slice/prefix-name.scope`.
    pub path: String,
}

/// Parse a systemd-style cgroupsPath `slice:prefix:name`.
pub fn systemd_cgroup_path(s: &str) -> Result<SystemdCgroupsPath, Error> {
    let bad = |why: &str| Error::Option { option: "linux.cgroupsPath", value: s.into(), why: why.into() };
    let parts: Vec<&str> = s.split(':').collect();
    let [slice, prefix, name] = parts.as_slice() else {
        return Err(bad("with --systemd-cgroup the form is slice:prefix:name"));
    };
    if name.is_empty() {
        return Err(bad("the name part is empty"));
    }
    let unit_chars = |p: &str| p.chars().all(|c| c.is_ascii_alphanumeric() || "_.-@".contains(c));
    if ![slice, prefix, name].iter().all(|p| unit_chars(p)) || name.ends_with(".slice") {
        return Err(bad(
            "systemd unit names are made of letters, digits, '_', '.', '-' and '@', and the name part \
             names a scope, not a slice",
        ));
    }
    let slice = if slice.is_empty() { "system.slice" } else { slice };
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err(bad("the slice must end in .slice"));
    };
    // `a-b-c.slice` lives in `a.slice/a-b.slice/a-b-c.slice`; `-.slice` is the root.
    let mut path = String::new();
    if stem != "-" {
        let mut acc = String::new();
        for (i, part) in stem.split('-').enumerate() {
            if part.is_empty() {
                return Err(bad("the slice name has an empty '-' part"));
            }
            if i > 0 {
                acc.push('-');
            }
            acc.push_str(part);
            path.push('/');
            path.push_str(&acc);
            path.push_str(".slice");
        }
    }
    let unit = if prefix.is_empty() { format!("{name}.scope") } else { format!("{prefix}-{name}.scope") };
    Ok(SystemdCgroupsPath { slice: slice.to_string(), path: format!("{path}/{unit}"), unit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_like_runc() {
        assert!(check_id("abc-123_x.y+z").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(1025)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn systemd_paths_expand_their_slices() {
        let p = systemd_cgroup_path("kubepods-burstable-pod12.slice:cri-containerd:abc").unwrap();
        assert_eq!(
            p.path,
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12.slice/cri-containerd-abc.scope"
        );
        assert_eq!((p.slice.as_str(), p.unit.as_str()), ("kubepods-burstable-pod12.slice", "cri-containerd-abc.scope"));
        let p = systemd_cgroup_path(":runc:x").unwrap();
        assert_eq!((p.path.as_str(), p.slice.as_str()), ("/system.slice/runc-x.scope", "system.slice"));
        assert_eq!(systemd_cgroup_path("-.slice::x").unwrap().path, "/x.scope");
        for bad in ["/a/b", "a:b:c", "a.slice:b:../../x", "a.slice:b:c/d", "a.slice:b:c.slice", "a.slice:b:"] {
            assert!(systemd_cgroup_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn relative_root_is_resolved_against_the_bundle() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("config.json"),
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","user":{"uid":0,"gid":0},"args":["true"]}}"#,
        )
        .unwrap();
        let spec = load(d.path()).unwrap();
        assert_eq!(spec.root().as_ref().unwrap().path(), &d.path().join("rootfs"));
        std::fs::write(d.path().join("config.json"), "{").unwrap();
        let e = load(d.path()).unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("not a valid"), "{e}");
    }
}
