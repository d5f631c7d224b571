//! Export of a run record as an RO-Crate Process Run Crate and as an in-toto Statement.
//!
//! Both are built from the record alone: files are described by the digests the
//! record holds and referred to where they lie on the host, never copied or
//! read again. Environment values stay as recorded (secret-looking ones are
//! digests).

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::{Error, RunRecord, Status};
use crate::digest::Digest;

/// RO-Crate 1.1.
pub const RO_CRATE_CONTEXT: &str = "https://w3id.org/ro/crate/1.1/context";
/// The workflow-run terms (`environment`, `containerImage`, `sha256`, ...).
pub const WFRUN_CONTEXT: &str = "https://w3id.org/ro/terms/workflow-run/context";
/// RO-Crate 1.1 specification (what the metadata descriptor conforms to).
pub const RO_CRATE_SPEC: &str = "https://w3id.org/ro/crate/1.1";
/// The Process Run Crate profile the root dataset conforms to.
pub const PROCESS_RUN_PROFILE: &str = "https://w3id.org/ro/wfrun/process/0.5";
/// The metadata file of a crate.
pub const RO_CRATE_METADATA: &str = "ro-crate-metadata.json";
/// in-toto Statement v1.
pub const IN_TOTO_STATEMENT: &str = "https://in-toto.io/Statement/v1";
/// SLSA Provenance v1.
pub const SLSA_PROVENANCE: &str = "https://slsa.dev/provenance/v1";
/// The build type of an exprun run.
pub const BUILD_TYPE: &str = "https://exprun.dev/run/v1";

/// The builder id of this exprun version.
pub fn builder_id(version: &str) -> String {
    format!("https://exprun.dev/exprun@{version}")
}

/// Where a record was read from, for the in-toto byproducts.
#[derive(Debug, Clone)]
pub struct RecordFile {
    /// The record.json path.
    pub path: PathBuf,
    /// Its sha256.
    pub digest: Digest,
}

fn argv(r: &RunRecord) -> Vec<String> {
    r.spec.process().as_ref().and_then(|p| p.args().clone()).unwrap_or_default()
}

fn env(r: &RunRecord) -> Vec<String> {
    r.spec.process().as_ref().and_then(|p| p.env().clone()).unwrap_or_default()
}

/// Bytes of a path, percent-encoded except unreserved characters and `/`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `file://` URI of an absolute host path.
fn file_uri(p: &Path) -> String {
    format!("file://{}", percent_encode(&p.to_string_lossy()))
}

/// The host path of an entry of a tree rooted at `source` (`.` is the root itself).
fn host_path(source: &Path, rel: &str) -> PathBuf {
    if rel == "." {
        source.to_path_buf()
    } else {
        source.join(rel)
    }
}

/// The path inside the container of an entry of a mount at `destination`.
fn container_path(destination: &Path, rel: &str) -> String {
    host_path(destination, rel).to_string_lossy().into_owned()
}

fn id_ref(id: &str) -> Value {
    json!({ "@id": id })
}

/// The image's name split into registry (when the first component is a host),
/// repository name and tag.
fn split_image_name(name: &str) -> (Option<String>, String, Option<String>) {
    let (name, tag) = crate::image::reference::split_tag(name.split('@').next().unwrap_or(name));
    let (registry, repo) = match name.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            (Some(first.to_string()), rest.to_string())
        }
        _ => (None, name.to_string()),
    };
    (registry, repo, tag.map(str::to_string))
}

/// The RO-Crate Process Run Crate of a run: `ro-crate-metadata.json`'s content.
///
/// With `crate_dir`, files under it get ids relative to it (they are then part
/// of the crate); every other file is named by its `file://` URI.
pub fn ro_crate(r: &RunRecord, crate_dir: Option<&Path>) -> Value {
    let run_id = format!("#run-{}", r.run_id);
    let mut graph: Vec<Value> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let file_id = |p: &Path| -> String {
        if let Some(rel) = crate_dir.and_then(|d| p.strip_prefix(d).ok()) {
            let rel = rel.to_string_lossy();
            if !rel.is_empty() {
                return percent_encode(&rel);
            }
        }
        file_uri(p)
    };

    // Files: inputs are the action's object, outputs its result.
    let mut files = |list: &[super::DataRecord], role: &str, graph: &mut Vec<Value>| -> Vec<Value> {
        let mut refs = Vec::new();
        for d in list {
            let Some(tree) = &d.tree else { continue };
            for e in tree.entries.iter().filter(|e| e.kind == "file") {
                let id = file_id(&host_path(&d.source, &e.path));
                refs.push(id_ref(&id));
                if !seen.insert(id.clone()) {
                    continue;
                }
                let inside = container_path(&d.destination, &e.path);
                let mut f = json!({
                    "@id": id,
                    "@type": "File",
                    "name": Path::new(&inside).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| inside.clone()),
                    "alternateName": inside,
                    "description": format!("{role} of run {}", r.run_id),
                });
                if let Some(n) = e.size {
                    f["contentSize"] = json!(n.to_string());
                }
                if let Some(dg) = &e.digest {
                    f["sha256"] = json!(dg.hex());
                }
                graph.push(f);
            }
        }
        refs
    };
    let mut file_entities = Vec::new();
    let object = files(&r.inputs, "input", &mut file_entities);
    let result = files(&r.outputs, "output", &mut file_entities);

    // The command, run from the image.
    let args = argv(r);
    let command = args.join(" ");
    let mut instrument = json!({
        "@id": "#command",
        "@type": "SoftwareApplication",
        "name": r.executable.clone().or_else(|| args.first().cloned()).unwrap_or_else(|| "command".into()),
        "description": format!("{command}{}", r.image.as_ref().map(|i| format!(" in image {}", i.reference)).unwrap_or_default()),
    });
    if let Some(i) = &r.image {
        instrument["softwareVersion"] = json!(i.manifest_digest.to_string());
    }

    // The action.
    let completed = r.status == Status::Exited && r.exit.code == Some(0);
    let mut action = json!({
        "@id": run_id,
        "@type": "CreateAction",
        "name": format!("exprun run {}{}", r.run_id, r.name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()),
        "description": command,
        "instrument": id_ref("#command"),
        "object": object,
        "result": result,
    });
    if let Some(t) = &r.time.started {
        action["startTime"] = json!(t);
    }
    if let Some(t) = &r.time.ended {
        action["endTime"] = json!(t);
    }
    if r.status != Status::Supervised {
        let status = if completed { "CompletedActionStatus" } else { "FailedActionStatus" };
        action["actionStatus"] = id_ref(&format!("http://schema.org/{status}"));
        if !completed {
            let why = r.exit.message.clone().unwrap_or_else(|| match (&r.exit.signal, r.exit.code) {
                (Some(s), _) => format!("killed by {s}"),
                (None, Some(c)) => format!("exited with status {c}"),
                (None, None) => "no exit status".into(),
            });
            action["error"] = json!(why);
        }
    }
    let mut extra = Vec::new();
    if let Some(i) = &r.image {
        action["containerImage"] = id_ref("#image");
        // A pulled image is named by where it came from.
        let named = i.origin.as_ref().map(|o| o.reference.as_str()).or(i.name.as_deref());
        let (registry, name, tag) = split_image_name(named.unwrap_or(&i.reference));
        let mut img = json!({
            "@id": "#image",
            "@type": "ContainerImage",
            "additionalType": id_ref("https://w3id.org/ro/terms/workflow-run#DockerImage"),
            "name": name,
            "sha256": i.manifest_digest.hex(),
            "identifier": i.manifest_digest.to_string(),
            "description": format!("{} ({}), manifest {}", i.reference, i.platform, i.manifest_digest),
        });
        if let Some(reg) = registry {
            img["registry"] = json!(reg);
        }
        if let Some(tag) = tag {
            img["tag"] = json!(tag);
        }
        extra.push(img);
    }

    // Environment, as recorded.
    let mut env_refs = Vec::new();
    let mut env_names = BTreeSet::new();
    for e in env(r) {
        let (k, v) = e.split_once('=').unwrap_or((&e, ""));
        if !env_names.insert(k.to_string()) {
            continue; // the first definition is the one the process sees
        }
        let id = format!("#env-{}", percent_encode(k));
        env_refs.push(id_ref(&id));
        extra.push(json!({"@id": id, "@type": "PropertyValue", "name": k, "value": v}));
    }
    if !env_refs.is_empty() {
        action["environment"] = Value::Array(env_refs);
    }

    // Exit status and streams.
    let mut props: Vec<(&str, Value)> = vec![("status", serde_json::to_value(r.status).unwrap_or_default())];
    if let Some(c) = r.exit.code {
        props.push(("exitCode", json!(c)));
    }
    if let Some(s) = &r.exit.signal {
        props.push(("signal", json!(s)));
    }
    if r.exit.oom_killed {
        props.push(("oomKilled", json!(true)));
    }
    for (label, s) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        if let Some(s) = s {
            props.push((
                if label == "stdout" { "stdout.sha256" } else { "stderr.sha256" },
                json!(s.digest.hex()),
            ));
            props.push((if label == "stdout" { "stdout.bytes" } else { "stderr.bytes" }, json!(s.bytes)));
        }
    }
    props.push(("exprun.version", json!(r.exprun.version)));
    if let Some(d) = &r.exprun.binary_digest {
        props.push(("exprun.sha256", json!(d.hex())));
    }
    let mut prop_refs = Vec::new();
    for (name, value) in props {
        let id = format!("#{name}");
        prop_refs.push(id_ref(&id));
        extra.push(json!({"@id": id, "@type": "PropertyValue", "name": name, "value": value}));
    }
    action["additionalProperty"] = Value::Array(prop_refs);

    // Resource usage, as the workflow-run terms have it.
    let mut usage_refs = Vec::new();
    let usage = serde_json::to_value(&r.usage).unwrap_or_default();
    let wall = r.time.wall_seconds.map(|w| ("wall_seconds".to_string(), json!(w)));
    let figures = usage.as_object().cloned().unwrap_or_default().into_iter().chain(wall);
    for (name, value) in figures.filter(|(_, v)| !v.is_null()) {
        let id = format!("#usage-{name}");
        usage_refs.push(id_ref(&id));
        extra.push(json!({"@id": id, "@type": "PropertyValue", "name": name, "value": value}));
    }
    if !usage_refs.is_empty() {
        action["resourceUsage"] = Value::Array(usage_refs);
    }

    let has_part: Vec<Value> =
        file_entities.iter().filter_map(|f| f.get("@id")).map(|id| json!({"@id": id})).collect();
    graph.push(json!({
        "@id": RO_CRATE_METADATA,
        "@type": "CreativeWork",
        "conformsTo": id_ref(RO_CRATE_SPEC),
        "about": id_ref("./"),
    }));
    graph.push(json!({
        "@id": "./",
        "@type": "Dataset",
        "conformsTo": id_ref(PROCESS_RUN_PROFILE),
        "name": format!("exprun run {}", r.run_id),
        "description": format!("Provenance of exprun run {}: {}", r.run_id, args.join(" ")),
        "datePublished": r.time.created,
        "hasPart": has_part,
        "mentions": [id_ref(&run_id)],
    }));
    graph.push(json!({
        "@id": PROCESS_RUN_PROFILE,
        "@type": "CreativeWork",
        "name": "Process Run Crate",
        "version": "0.5",
    }));
    graph.push(action);
    graph.push(instrument);
    graph.extend(extra);
    graph.extend(file_entities);
    json!({
        "@context": [RO_CRATE_CONTEXT, WFRUN_CONTEXT],
        "@graph": graph,
    })
}

/// A ResourceDescriptor's digest set.
fn digest_set(d: &Digest) -> Value {
    json!({ "sha256": d.hex() })
}

/// The in-toto Statement (SLSA Provenance v1 predicate) of a run: its subjects
/// are the output files and the non-empty stdout and stderr.
pub fn in_toto(r: &RunRecord, record_file: Option<&RecordFile>) -> Value {
    let mut subject = Vec::new();
    for d in &r.outputs {
        let Some(tree) = &d.tree else { continue };
        for e in tree.entries.iter().filter(|e| e.kind == "file") {
            if let Some(dg) = &e.digest {
                subject
                    .push(json!({"name": container_path(&d.destination, &e.path), "digest": digest_set(dg)}));
            }
        }
    }
    for (name, s) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        if let Some(s) = s.as_ref().filter(|s| s.bytes > 0) {
            subject.push(json!({"name": name, "digest": digest_set(&s.digest)}));
        }
    }

    let process = r.spec.process().clone().unwrap_or_default();
    let mounts = |list: &[super::DataRecord]| -> Vec<Value> {
        list.iter().map(|d| json!({"source": d.source, "destination": d.destination})).collect()
    };
    let mut external = Map::new();
    external.insert("image".into(), json!(r.image.as_ref().map(|i| &i.reference)));
    external.insert("argv".into(), json!(argv(r)));
    external.insert("env".into(), json!(env(r)));
    external.insert("cwd".into(), json!(process.cwd()));
    external.insert("user".into(), json!({"uid": process.user().uid(), "gid": process.user().gid()}));
    external.insert("hostname".into(), json!(r.spec.hostname()));
    external.insert("inputs".into(), json!(mounts(&r.inputs)));
    external.insert("outputs".into(), json!(mounts(&r.outputs)));
    if let Some(n) = &r.name {
        external.insert("name".into(), json!(n));
    }

    let mut internal = Map::new();
    internal.insert("limits".into(), serde_json::to_value(&r.cgroup.limits).unwrap_or_default());
    internal.insert("cgroupVersion".into(), serde_json::to_value(r.cgroup.version).unwrap_or_default());
    if let Some(d) = &r.seccomp_digest {
        internal.insert("seccompProfile".into(), json!({"digest": digest_set(d)}));
    }
    if let Some(linux) = r.spec.linux() {
        internal.insert("namespaces".into(), json!(linux.namespaces()));
    }
    internal.insert("executable".into(), json!(r.executable));
    internal.insert("host".into(), serde_json::to_value(&r.host).unwrap_or_default());

    let mut deps = Vec::new();
    if let Some(i) = &r.image {
        let mut dep = json!({
            "name": i.reference,
            "digest": digest_set(&i.manifest_digest),
            "annotations": {
                "exprun.role": "image-manifest",
                "config": i.config_digest.to_string(),
                "platform": i.platform,
            },
        });
        if let Some(o) = &i.origin {
            dep["uri"] = json!(format!("oci://{}@{}", o.reference, i.manifest_digest));
        }
        deps.push(dep);
        for (n, l) in i.layers.iter().enumerate() {
            deps.push(json!({
                "name": format!("{} layer {n}", i.reference),
                "digest": digest_set(&l.digest),
                "mediaType": l.media_type,
                "annotations": {"exprun.role": "image-layer", "diff_id": l.diff_id.to_string(), "size": l.size},
            }));
        }
    }
    for d in &r.inputs {
        let Some(tree) = &d.tree else { continue };
        for e in tree.entries.iter().filter(|e| e.kind == "file") {
            if let Some(dg) = &e.digest {
                deps.push(json!({
                    "uri": file_uri(&host_path(&d.source, &e.path)),
                    "name": container_path(&d.destination, &e.path),
                    "digest": digest_set(dg),
                    "annotations": {"exprun.role": "input"},
                }));
            }
        }
    }

    let mut builder = json!({
        "id": builder_id(&r.exprun.version),
        "version": {"exprun": r.exprun.version},
    });
    if let Some(d) = &r.exprun.binary_digest {
        builder["builderDependencies"] = json!([{"name": "exprun", "digest": digest_set(d)}]);
    }
    let mut metadata = json!({"invocationId": r.run_id});
    if let Some(t) = r.time.started.as_ref().or(Some(&r.time.created)) {
        metadata["startedOn"] = json!(t);
    }
    if let Some(t) = &r.time.ended {
        metadata["finishedOn"] = json!(t);
    }
    let mut run_details = json!({"builder": builder, "metadata": metadata});
    if let Some(f) = record_file {
        run_details["byproducts"] = json!([{
            "name": "record.json",
            "uri": file_uri(&f.path),
            "digest": digest_set(&f.digest),
            "mediaType": "application/json",
            "annotations": {
                "exprun.role": "run-record",
                "status": r.status,
                "exitCode": r.exit.code,
                "signal": r.exit.signal,
                "oomKilled": r.exit.oom_killed,
            },
        }]);
    }

    json!({
        "_type": IN_TOTO_STATEMENT,
        "subject": subject,
        "predicateType": SLSA_PROVENANCE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": internal,
                "resolvedDependencies": deps,
            },
            "runDetails": run_details,
        },
    })
}

/// Write `bytes` to `path`: replaced atomically with `force`, otherwise only if
/// nothing is there yet.
pub fn write_new(path: &Path, bytes: &[u8], force: bool) -> Result<(), Error> {
    let err = |source| Error::Io { op: "writing", path: path.to_path_buf(), source };
    if force {
        return crate::fsutil::write_atomic(path, bytes, true).map_err(err);
    }
    let mut f = OpenOptions::new().write(true).create_new(true).open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            err(io::Error::new(io::ErrorKind::AlreadyExists, "it already exists; pass --force to replace it"))
        } else {
            err(e)
        }
    })?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written {
        drop(f);
        let _ = fs::remove_file(path);
        return Err(err(e));
    }
    Ok(())
}

/// Pretty JSON with a trailing newline.
pub fn to_pretty(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).unwrap_or_default();
    b.push(b'\n');
    b
}

/// Write the crate's metadata file into `dir` (created if missing); returns its path.
pub fn write_ro_crate(r: &RunRecord, dir: &Path, force: bool) -> Result<PathBuf, Error> {
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        op: "creating",
        path: dir.to_path_buf(),
        source,
    })?;
    let canonical = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let path = dir.join(RO_CRATE_METADATA);
    write_new(&path, &to_pretty(&ro_crate(r, Some(&canonical))), force)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RunRecord {
        serde_json::from_value(super::super::diff::sample_record("0123456789abcdef0123456789abcdef")).unwrap()
    }

    fn is_hex64(v: &Value) -> bool {
        v.as_str().is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    fn entity<'a>(graph: &'a [Value], id: &str) -> &'a Value {
        graph.iter().find(|e| e["@id"] == id).unwrap_or_else(|| panic!("no entity {id}"))
    }

    #[test]
    fn in_toto_statement_has_the_slsa_shape() {
        let r = record();
        let rf = RecordFile { path: "/r/runs/x/record.json".into(), digest: Digest::of_bytes(b"rec") };
        let s = in_toto(&r, Some(&rf));
        // Valid JSON that parses back.
        let s: Value = serde_json::from_slice(&to_pretty(&s)).unwrap();
        assert_eq!(s["_type"], IN_TOTO_STATEMENT);
        assert_eq!(s["predicateType"], SLSA_PROVENANCE);
        let names: Vec<&str> =
            s["subject"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap()).collect();
        // Every output file, no directory, stderr (non-empty) but not the empty stdout.
        assert_eq!(names, ["/out/a", "/out/b", "stderr"]);
        for sub in s["subject"].as_array().unwrap() {
            assert!(is_hex64(&sub["digest"]["sha256"]), "{sub}");
        }
        assert_eq!(s["subject"][0]["digest"]["sha256"], Digest::of_bytes(b"1\n").hex());
        let bd = &s["predicate"]["buildDefinition"];
        assert_eq!(bd["buildType"], BUILD_TYPE);
        assert_eq!(bd["externalParameters"]["argv"], json!(["sh", "-c", "echo 1 > /out/a"]));
        assert_eq!(bd["externalParameters"]["image"], "busybox:latest");
        assert!(bd["externalParameters"]["env"]
            .as_array()
            .unwrap()
            .contains(&json!("HF_TOKEN=<redacted sha256:1>")));
        assert_eq!(bd["internalParameters"]["limits"]["pids_max"], 100);
        let deps = bd["resolvedDependencies"].as_array().unwrap();
        assert_eq!(deps[0]["digest"]["sha256"], r.image.as_ref().unwrap().manifest_digest.hex());
        assert_eq!(deps.len(), 3, "manifest, one layer, one input file: {deps:#?}");
        assert_eq!(deps[2]["uri"], "file:///in/x.csv");
        assert_eq!(deps[2]["name"], "/data/x.csv");
        for d in deps {
            assert!(is_hex64(&d["digest"]["sha256"]), "{d}");
        }
        let rd = &s["predicate"]["runDetails"];
        assert_eq!(rd["builder"]["id"], "https://exprun.dev/exprun@0.1.0");
        assert_eq!(rd["builder"]["version"]["exprun"], "0.1.0");
        assert!(is_hex64(&rd["builder"]["builderDependencies"][0]["digest"]["sha256"]));
        assert_eq!(rd["metadata"]["invocationId"], r.run_id);
        assert_eq!(rd["metadata"]["startedOn"], "2026-01-01T00:00:01Z");
        assert_eq!(rd["metadata"]["finishedOn"], "2026-01-01T00:00:02Z");
        assert_eq!(rd["byproducts"][0]["annotations"]["exitCode"], 0);
        // Every DigestSet anywhere holds bare hex, never `sha256:`-prefixed.
        fn digest_sets(v: &Value, n: &mut usize) {
            match v {
                Value::Object(m) => {
                    for (k, x) in m {
                        if k == "digest" {
                            let set = x.as_object().unwrap();
                            assert!(set.values().all(is_hex64), "{x}");
                            *n += 1;
                        }
                        digest_sets(x, n);
                    }
                }
                Value::Array(l) => l.iter().for_each(|x| digest_sets(x, n)),
                _ => {}
            }
        }
        let mut n = 0;
        digest_sets(&s, &mut n);
        assert_eq!(n, 3 + 3 + 1 + 1, "subjects, dependencies, builder, byproduct");
    }

    #[test]
    fn ro_crate_is_a_process_run_crate() {
        let r = record();
        let c: Value = serde_json::from_slice(&to_pretty(&ro_crate(&r, None))).unwrap();
        assert_eq!(c["@context"], json!([RO_CRATE_CONTEXT, WFRUN_CONTEXT]));
        let g = c["@graph"].as_array().unwrap();
        let ids: BTreeSet<&str> = g.iter().map(|e| e["@id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), g.len(), "ids are unique");
        let meta = entity(g, RO_CRATE_METADATA);
        assert_eq!(meta["about"]["@id"], "./");
        assert_eq!(meta["conformsTo"]["@id"], RO_CRATE_SPEC);
        let root = entity(g, "./");
        assert_eq!(root["@type"], "Dataset");
        assert_eq!(root["conformsTo"]["@id"], PROCESS_RUN_PROFILE);
        assert!(root["datePublished"].is_string() && root["name"].is_string());
        entity(g, PROCESS_RUN_PROFILE);
        let run = format!("#run-{}", r.run_id);
        assert_eq!(root["mentions"][0]["@id"], run);
        let action = entity(g, &run);
        assert_eq!(action["@type"], "CreateAction");
        assert_eq!(action["actionStatus"]["@id"], "http://schema.org/CompletedActionStatus");
        assert_eq!(action["startTime"], "2026-01-01T00:00:01Z");
        assert_eq!(action["endTime"], "2026-01-01T00:00:02Z");
        assert_eq!(entity(g, action["instrument"]["@id"].as_str().unwrap())["@type"], "SoftwareApplication");
        let image = entity(g, action["containerImage"]["@id"].as_str().unwrap());
        assert_eq!(image["@type"], "ContainerImage");
        assert_eq!((image["name"].as_str(), image["tag"].as_str()), (Some("busybox"), Some("latest")));
        assert!(is_hex64(&image["sha256"]));
        // Files: referenced by file:// URI, with bare-hex sha256, all in hasPart.
        let result: Vec<&str> =
            action["result"].as_array().unwrap().iter().map(|x| x["@id"].as_str().unwrap()).collect();
        assert_eq!(result, ["file:///tmp/o1/a", "file:///tmp/o1/b"]);
        assert_eq!(action["object"][0]["@id"], "file:///in/x.csv");
        let a = entity(g, "file:///tmp/o1/a");
        assert_eq!(a["@type"], "File");
        assert_eq!(a["sha256"], Digest::of_bytes(b"1\n").hex());
        assert_eq!(a["alternateName"], "/out/a");
        assert_eq!(a["contentSize"], "2");
        let parts: Vec<&Value> = root["hasPart"].as_array().unwrap().iter().map(|x| &x["@id"]).collect();
        assert_eq!(parts.len(), 3);
        // Environment as PropertyValues, redacted values as recorded.
        let env: Vec<&Value> = action["environment"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| entity(g, x["@id"].as_str().unwrap()))
            .collect();
        assert!(env.iter().any(|e| e["name"] == "HF_TOKEN" && e["value"] == "<redacted sha256:1>"));
        assert!(env.iter().all(|e| e["@type"] == "PropertyValue"));
        let props: Vec<&Value> = action["additionalProperty"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| entity(g, x["@id"].as_str().unwrap()))
            .collect();
        assert!(props.iter().any(|p| p["name"] == "exitCode" && p["value"] == 0));
        // Nested entities are only ever references (flattened JSON-LD).
        for e in g {
            for (_, v) in e.as_object().unwrap() {
                for x in v.as_array().map(|l| l.iter().collect()).unwrap_or_else(|| vec![v]) {
                    if let Some(o) = x.as_object() {
                        assert!(o.len() == 1 && o.contains_key("@id"), "nested entity in {e}");
                    }
                }
            }
        }
    }

    #[test]
    fn ro_crate_in_an_output_dir_uses_relative_ids_and_failed_runs_fail() {
        let mut r = record();
        r.status = Status::Killed;
        r.exit.code = Some(137);
        r.exit.signal = Some("SIGKILL".into());
        let c = ro_crate(&r, Some(Path::new("/tmp/o1")));
        let g = c["@graph"].as_array().unwrap();
        let action = entity(g, &format!("#run-{}", r.run_id));
        assert_eq!(action["result"], json!([{"@id": "a"}, {"@id": "b"}]));
        assert_eq!(action["object"][0]["@id"], "file:///in/x.csv");
        assert_eq!(action["actionStatus"]["@id"], "http://schema.org/FailedActionStatus");
        assert_eq!(action["error"], "killed by SIGKILL");
    }

    #[test]
    fn names_uris_and_writes() {
        assert_eq!(split_image_name("busybox:latest"), (None, "busybox".into(), Some("latest".into())));
        assert_eq!(
            split_image_name("localhost:5000/lab/x:1.0"),
            (Some("localhost:5000".into()), "lab/x".into(), Some("1.0".into()))
        );
        assert_eq!(split_image_name("ghcr.io/a/b"), (Some("ghcr.io".into()), "a/b".into(), None));
        assert_eq!(file_uri(Path::new("/a b/c%d")), "file:///a%20b/c%25d");
        let d = tempfile::tempdir().unwrap();
        let r = record();
        let p = write_ro_crate(&r, &d.path().join("crate"), false).unwrap();
        let _: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        let again = write_ro_crate(&r, &d.path().join("crate"), false).unwrap_err().to_string();
        assert!(again.contains("--force"), "{again}");
        write_ro_crate(&r, &d.path().join("crate"), true).unwrap();
        assert_eq!(fs::read_dir(d.path().join("crate")).unwrap().count(), 1, "no temporary files left");
    }
}
