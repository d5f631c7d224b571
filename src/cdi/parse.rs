//! One CDI spec file, JSON or YAML, parsed and checked field by field.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Edits, Error, Hook, Mount};
use crate::spec::devices::{host_node, DeviceRequest};

/// The file name extensions read as YAML (others: `.json`).
pub const YAML_EXTENSIONS: &[&str] = &["yaml", "yml"];

/// The hook kinds a CDI spec may add: those `exprun run` runs.
const HOOK_KINDS: &[&str] = &["prestart", "createRuntime", "createContainer", "startContainer"];

/// A spec file, checked, its device nodes' host numbers read.
#[derive(Debug, Clone)]
pub struct SpecFile {
    /// Where it is.
    pub path: PathBuf,
    /// The sha256 of its bytes, hex.
    pub sha256: String,
    /// `vendor.com/class`.
    pub kind: String,
    /// Its devices.
    pub devices: Vec<DeviceSpec>,
    /// The edits every one of its devices brings.
    pub edits: Edits,
}

/// One device of a spec.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// The name after `=`.
    pub name: String,
    /// Its edits.
    pub edits: Edits,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSpec {
    cdi_version: String,
    kind: String,
    #[serde(default, rename = "annotations")]
    _annotations: Option<BTreeMap<String, String>>,
    devices: Vec<RawDevice>,
    #[serde(default)]
    container_edits: Option<RawEdits>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawDevice {
    name: String,
    #[serde(default, rename = "annotations")]
    _annotations: Option<BTreeMap<String, String>>,
    container_edits: RawEdits,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEdits {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    device_nodes: Option<Vec<RawNode>>,
    #[serde(default)]
    hooks: Option<Vec<RawHook>>,
    #[serde(default)]
    mounts: Option<Vec<RawMount>>,
    #[serde(default, rename = "additionalGIDs")]
    additional_gids: Option<Vec<u32>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawNode {
    path: String,
    #[serde(default)]
    host_path: Option<String>,
    #[serde(default, rename = "type")]
    typ: Option<String>,
    #[serde(default)]
    major: Option<i64>,
    #[serde(default)]
    minor: Option<i64>,
    #[serde(default)]
    file_mode: Option<u32>,
    #[serde(default)]
    permissions: Option<String>,
    #[serde(default)]
    uid: Option<u32>,
    #[serde(default)]
    gid: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawMount {
    host_path: String,
    container_path: String,
    #[serde(default)]
    options: Option<Vec<String>>,
    #[serde(default, rename = "type")]
    typ: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawHook {
    hook_name: String,
    path: String,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    timeout: Option<i64>,
}

/// Parse and check the spec `path` holds (`bytes`).
pub fn spec_file(path: &Path, bytes: &[u8]) -> Result<SpecFile, Error> {
    let bad = |field: &str, why: String| Error::Spec { path: path.to_path_buf(), field: field.into(), why };
    let text = std::str::from_utf8(bytes).map_err(|e| bad("(file)", format!("not UTF-8: {e}")))?;
    let yaml = path.extension().and_then(|e| e.to_str()).is_some_and(|e| YAML_EXTENSIONS.contains(&e));
    let value = if yaml {
        yaml_value(text).map_err(|why| bad("(file)", why))?
    } else {
        serde_json::from_str::<Value>(text).map_err(|e| bad("(file)", format!("not JSON: {e}")))?
    };
    let raw: RawSpec = serde_json::from_value(value).map_err(|e| bad("(spec)", e.to_string()))?;
    if !raw.cdi_version.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad("cdiVersion", format!("{:?} is not a version such as 0.6.0", raw.cdi_version)));
    }
    super::check_kind(&raw.kind).map_err(|w| bad("kind", w))?;
    let edits = match raw.container_edits {
        Some(e) => container_edits(path, "containerEdits", e)?,
        None => Edits::default(),
    };
    let mut devices = Vec::new();
    for (i, d) in raw.devices.into_iter().enumerate() {
        let field = format!("devices[{i}]");
        super::split_name(&format!("{}={}", raw.kind, d.name))
            .map_err(|_| bad(&format!("{field}.name"), format!("{:?} is not a CDI device name", d.name)))?;
        devices.push(DeviceSpec {
            name: d.name,
            edits: container_edits(path, &format!("{field}.containerEdits"), d.container_edits)?,
        });
    }
    Ok(SpecFile {
        path: path.to_path_buf(),
        sha256: hex::encode(Sha256::digest(bytes)),
        kind: raw.kind,
        devices,
        edits,
    })
}

fn container_edits(path: &Path, at: &str, raw: RawEdits) -> Result<Edits, Error> {
    let bad = |field: String, why: String| Error::Spec { path: path.to_path_buf(), field, why };
    let mut out = Edits::default();
    for (i, e) in raw.env.unwrap_or_default().into_iter().enumerate() {
        if e.split_once('=').is_none_or(|(k, _)| k.is_empty()) || e.contains('\0') {
            return Err(bad(format!("{at}.env[{i}]"), format!("{e:?} is not NAME=VALUE")));
        }
        out.env.push(e);
    }
    for (i, n) in raw.device_nodes.unwrap_or_default().into_iter().enumerate() {
        out.device_nodes.push(node(path, &format!("{at}.deviceNodes[{i}]"), n)?);
    }
    for (i, m) in raw.mounts.unwrap_or_default().into_iter().enumerate() {
        let field = format!("{at}.mounts[{i}]");
        let host_path = PathBuf::from(&m.host_path);
        if !host_path.is_absolute() {
            return Err(bad(
                format!("{field}.hostPath"),
                format!("{:?} is not an absolute path", m.host_path),
            ));
        }
        let container_path =
            clean_absolute(&m.container_path).map_err(|why| bad(format!("{field}.containerPath"), why))?;
        out.mounts.push(Mount {
            host_path,
            container_path,
            options: m.options.unwrap_or_default(),
            fstype: m.typ,
        });
    }
    for (i, h) in raw.hooks.unwrap_or_default().into_iter().enumerate() {
        let field = format!("{at}.hooks[{i}]");
        if !HOOK_KINDS.contains(&h.hook_name.as_str()) {
            return Err(bad(
                format!("{field}.hookName"),
                format!(
                    "{:?}: exprun run runs {} hooks only (it runs no poststart or poststop hook for a run)",
                    h.hook_name,
                    HOOK_KINDS.join(", ")
                ),
            ));
        }
        if !Path::new(&h.path).is_absolute() {
            return Err(bad(format!("{field}.path"), format!("{:?} is not an absolute path", h.path)));
        }
        out.hooks.push(Hook {
            kind: h.hook_name,
            path: h.path.into(),
            args: h.args.unwrap_or_default(),
            env: h.env.unwrap_or_default(),
            timeout: h.timeout,
        });
    }
    out.additional_gids = raw.additional_gids.unwrap_or_default();
    Ok(out)
}

/// A device node: its container path under /dev, its host node (the same path
/// unless `hostPath` says), numbers and mode from the host node unless given.
fn node(path: &Path, field: &str, n: RawNode) -> Result<DeviceRequest, Error> {
    let bad =
        |f: &str, why: String| Error::Spec { path: path.to_path_buf(), field: format!("{field}.{f}"), why };
    let container = clean_absolute(&n.path).map_err(|w| bad("path", w))?;
    if !container.starts_with("/dev") || container == Path::new("/dev") {
        return Err(bad("path", format!("{} is not a path under /dev", container.display())));
    }
    let host = PathBuf::from(n.host_path.as_deref().unwrap_or(&n.path));
    if !host.is_absolute() {
        return Err(bad("hostPath", format!("{} is not an absolute path", host.display())));
    }
    let perms = n.permissions.filter(|p| !p.is_empty()).unwrap_or_else(|| "rwm".into());
    if !perms.chars().all(|c| "rwm".contains(c)) {
        return Err(bad("permissions", format!("{perms:?} is not some of r, w, m")));
    }
    let found =
        host_node(&host).map_err(|w| bad(if n.host_path.is_some() { "hostPath" } else { "path" }, w))?;
    let kind = match n.typ.as_deref() {
        None => found.kind,
        Some("c") | Some("u") => 'c',
        Some("b") => 'b',
        Some(t) => return Err(bad("type", format!("{t:?}: a device node is c or b"))),
    };
    if kind != found.kind {
        return Err(bad("type", format!("{kind} but {} is a {} device", host.display(), found.kind)));
    }
    let number = |f: &str, v: Option<i64>, host: u64| match v {
        None => Ok(host),
        Some(v) => u64::try_from(v).map_err(|_| bad(f, format!("{v} is negative"))),
    };
    let mode = n.file_mode.map(|m| m & 0o7777).unwrap_or(found.mode);
    Ok(DeviceRequest {
        host,
        container,
        perms,
        kind,
        major: number("major", n.major, found.major)?,
        minor: number("minor", n.minor, found.minor)?,
        mode,
        uid: n.uid.unwrap_or(found.uid),
        gid: n.gid.unwrap_or(found.gid),
    })
}

/// An absolute path without `..`, normalised.
fn clean_absolute(s: &str) -> Result<PathBuf, String> {
    let p = Path::new(s);
    if !p.is_absolute() {
        return Err(format!("{s:?} is not an absolute path"));
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => return Err(format!("{s:?}: '..' is not allowed")),
            _ => {}
        }
    }
    Ok(out)
}

/// A YAML document as the JSON value it stands for.
fn yaml_value(text: &str) -> Result<Value, String> {
    use yaml_rust2::{Yaml, YamlLoader};
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let [doc] = docs.as_slice() else {
        return Err(format!("{} YAML documents; a spec is one", docs.len()));
    };
    fn convert(y: &Yaml) -> Result<Value, String> {
        Ok(match y {
            Yaml::Real(r) => {
                let f: f64 = r.parse().map_err(|_| format!("{r:?} is not a number"))?;
                serde_json::Number::from_f64(f).map(Value::Number).ok_or(format!("{r:?} is not a number"))?
            }
            Yaml::Integer(i) => Value::from(*i),
            Yaml::String(s) => Value::String(s.clone()),
            Yaml::Boolean(b) => Value::Bool(*b),
            Yaml::Array(a) => Value::Array(a.iter().map(convert).collect::<Result<_, _>>()?),
            Yaml::Hash(h) => {
                let mut m = serde_json::Map::new();
                for (k, v) in h {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        other => return Err(format!("a mapping key {other:?} is not a string")),
                    };
                    m.insert(key, convert(v)?);
                }
                Value::Object(m)
            }
            Yaml::Null => Value::Null,
            Yaml::Alias(_) | Yaml::BadValue => return Err("an alias or a bad value".into()),
        })
    }
    convert(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_give_the_same_spec() {
        let json = r#"{"cdiVersion": "0.6.0", "kind": "example.com/gpu",
            "devices": [{"name": "0", "containerEdits": {"deviceNodes": [{"path": "/dev/fakegpu0", "hostPath": "/dev/null"}],
              "env": ["A=1"]}}],
            "containerEdits": {"mounts": [{"hostPath": "/tmp", "containerPath": "/host-tmp", "options": ["ro", "bind"]}],
              "hooks": [{"hookName": "createRuntime", "path": "/bin/true", "args": ["true"]}], "additionalGIDs": [44]}}"#;
        let yaml = "cdiVersion: 0.6.0\nkind: example.com/gpu\ndevices:\n  - name: \"0\"\n    containerEdits:\n      deviceNodes:\n        - path: /dev/fakegpu0\n          hostPath: /dev/null\n      env: [\"A=1\"]\ncontainerEdits:\n  mounts:\n    - hostPath: /tmp\n      containerPath: /host-tmp\n      options: [ro, bind]\n  hooks:\n    - hookName: createRuntime\n      path: /bin/true\n      args: [\"true\"]\n  additionalGIDs: [44]\n";
        let a = spec_file(Path::new("/x/a.json"), json.as_bytes()).unwrap();
        let b = spec_file(Path::new("/x/a.yaml"), yaml.as_bytes()).unwrap();
        assert_eq!(a.kind, "example.com/gpu");
        assert_eq!(a.edits, b.edits);
        assert_eq!(a.devices[0].edits, b.devices[0].edits);
        let n = &a.devices[0].edits.device_nodes[0];
        assert_eq!((n.kind, n.major, n.minor, n.perms.as_str()), ('c', 1, 3, "rwm"));
        assert_eq!(n.container, Path::new("/dev/fakegpu0"));
        assert_eq!(a.edits.additional_gids, [44]);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (r#"{"cdiVersion": "0.6.0", "kind": "bad", "devices": []}"#, "kind"),
            (r#"{"cdiVersion": "x", "kind": "a.com/b", "devices": []}"#, "cdiVersion"),
            (
                r#"{"cdiVersion": "0.6.0", "kind": "a.com/b", "devices": [{"name": "0", "containerEdits": {"deviceNodes": [{"path": "/etc/x", "hostPath": "/dev/null"}]}}]}"#,
                "devices[0].containerEdits.deviceNodes[0].path",
            ),
            (
                r#"{"cdiVersion": "0.6.0", "kind": "a.com/b", "devices": [{"name": "0", "containerEdits": {"deviceNodes": [{"path": "/dev/x", "hostPath": "/etc/passwd"}]}}]}"#,
                "devices[0].containerEdits.deviceNodes[0].hostPath",
            ),
            (
                r#"{"cdiVersion": "0.6.0", "kind": "a.com/b", "devices": [{"name": "0", "containerEdits": {"mounts": [{"hostPath": "/tmp", "containerPath": "/a/../../etc"}]}}]}"#,
                "devices[0].containerEdits.mounts[0].containerPath",
            ),
            (
                r#"{"cdiVersion": "0.6.0", "kind": "a.com/b", "devices": [{"name": "0", "containerEdits": {"hooks": [{"hookName": "poststop", "path": "/bin/true"}]}}]}"#,
                "devices[0].containerEdits.hooks[0].hookName",
            ),
            (
                r#"{"cdiVersion": "0.6.0", "kind": "a.com/b", "devices": [{"name": "0", "containerEdits": {"intelRdt": {}}}]}"#,
                "intelRdt",
            ),
        ];
        for (json, field) in cases {
            let e = spec_file(Path::new("/s/x.json"), json.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("/s/x.json") && e.contains(field), "{field}: {e}");
        }
    }
}
