//! The built image: the builder's config with the run script as its command and
//! the captured layer on top, written as an OCI image layout for
//! `ImageStore::import`.
//!
//! The config is the builder's, changed as s2i changes it: `Cmd` = the run
//! script (`Entrypoint` stays the builder's), the `-e` variables added to `Env`
//! (except secret-looking names, which only the assemble step sees), the
//! labels `io.openshift.s2i.build.image` (the builder's manifest digest) and
//! `dev.exprun.build.source-digest` (the source tree's digest), `created` =
//! `SOURCE_DATE_EPOCH`, the layer's diff_id appended to `rootfs.diff_ids` and a
//! history entry naming the assemble script. Nothing in it depends on the host,
//! the time of the build or the run id, so the same inputs give the same bytes.

use std::fs;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::layer::Layer;
use super::{BuildPlan, Error};
use crate::digest::Digest;
use crate::image::ImageStore;

/// The label holding the builder's manifest digest.
pub const BUILDER_LABEL: &str = "io.openshift.s2i.build.image";
/// The label holding the digest of the source tree (see `record::files::digest_tree`).
pub const SOURCE_DIGEST_LABEL: &str = "dev.exprun.build.source-digest";

const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Everything the new image is made of.
pub struct NewImage<'a> {
    /// The build.
    pub plan: &'a BuildPlan,
    /// The captured layer.
    pub layer: &'a Layer,
    /// Its tar.
    pub layer_path: &'a Path,
    /// `-e`, in order.
    pub env: &'a [(String, String)],
    /// The source tree's digest.
    pub source_digest: &'a Digest,
}

/// `created` of the image: the epoch as RFC 3339.
pub fn created(epoch: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(epoch)).to_string()
}

fn internal(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unsupported(format!("{what}: {e}"))
}

/// The new image's config JSON.
pub fn config(n: &NewImage<'_>) -> Result<Vec<u8>, Error> {
    let plan = n.plan;
    let mut v =
        serde_json::to_value(&plan.builder.config).map_err(|e| internal("the builder's config", e))?;
    let root = v.as_object_mut().ok_or_else(|| internal("the builder's config", "not a JSON object"))?;
    let created = created(plan.epoch);
    root.insert("created".into(), json!(created));

    let mut cfg = take_object(root, "config");
    cfg.insert("Cmd".into(), json!([plan.run.display().to_string()]));
    let mut env: Vec<String> = cfg
        .get("Env")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    for (k, val) in n.env.iter().filter(|(k, v)| !crate::record::secrets::is_secret_entry(k, v)) {
        let entry = format!("{k}={val}");
        match env.iter_mut().find(|e| e.split_once('=').map_or(e.as_str(), |(name, _)| name) == k) {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    }
    if !env.is_empty() {
        cfg.insert("Env".into(), json!(env));
    }
    let mut labels = take_object(&mut cfg, "Labels");
    labels.insert(BUILDER_LABEL.into(), json!(plan.builder.manifest_digest.to_string()));
    labels.insert(SOURCE_DIGEST_LABEL.into(), json!(n.source_digest.to_string()));
    cfg.insert("Labels".into(), Value::Object(labels));
    root.insert("config".into(), Value::Object(cfg));

    let mut rootfs = take_object(root, "rootfs");
    rootfs.insert("type".into(), json!("layers"));
    let mut diff_ids = take_array(&mut rootfs, "diff_ids");
    diff_ids.push(json!(n.layer.diff_id.to_string()));
    rootfs.insert("diff_ids".into(), Value::Array(diff_ids));
    root.insert("rootfs".into(), Value::Object(rootfs));

    let mut history = take_array(root, "history");
    history.push(json!({
        "created": created,
        "created_by": format!("exprun build: {}", plan.assemble.display()),
        "comment": format!("s2i assemble of the source {}", n.source_digest),
    }));
    root.insert("history".into(), Value::Array(history));
    serde_json::to_vec(&v).map_err(|e| internal("the new config", e))
}

/// `map[key]` taken out as an object (empty if missing or not an object).
fn take_object(map: &mut Map<String, Value>, key: &str) -> Map<String, Value> {
    match map.remove(key) {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    }
}

/// `map[key]` taken out as an array (empty if missing or not an array).
fn take_array(map: &mut Map<String, Value>, key: &str) -> Vec<Value> {
    match map.remove(key) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    }
}

/// The OCI media type of a builder layer in the new (OCI) manifest: docker's
/// gzip layer type is the same blob as OCI's.
fn oci_layer_type(media_type: &str) -> &str {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => "application/vnd.oci.image.layer.v1.tar+gzip",
        other => other,
    }
}

/// The new image's manifest JSON.
pub fn manifest(plan: &BuildPlan, config: (&Digest, usize), layer: &Layer) -> Result<Vec<u8>, Error> {
    let mut layers: Vec<Value> = plan
        .builder
        .layers
        .iter()
        .map(|l| json!({"mediaType": oci_layer_type(&l.media_type), "digest": l.digest.to_string(), "size": l.size}))
        .collect();
    layers.push(json!({"mediaType": layer.compression.media_type(), "digest": layer.digest.to_string(), "size": layer.size}));
    let m = json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": config.0.to_string(), "size": config.1},
        "layers": layers,
    });
    serde_json::to_vec(&m).map_err(|e| internal("the new manifest", e))
}

/// Write the new image as an OCI layout in `dir` (which must not exist);
/// returns its manifest digest. The builder's blobs are hard-linked from the
/// store (copied if that fails); the layer tar is moved in.
pub fn write_layout(store: &ImageStore, dir: &Path, n: &NewImage<'_>) -> Result<Digest, crate::Error> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { op, path, source }
    };
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io("creating", &blobs))?;
    let put = |bytes: &[u8]| -> Result<(Digest, usize), Error> {
        let d = Digest::of_bytes(bytes);
        let p = blobs.join(d.hex());
        fs::write(&p, bytes).map_err(io("writing", &p))?;
        Ok((d, bytes.len()))
    };
    for l in &n.plan.builder.layers {
        let from = store.blob_path(&l.digest);
        let to = blobs.join(l.digest.hex());
        if fs::hard_link(&from, &to).is_err() {
            fs::copy(&from, &to).map_err(io("copying the builder's layer", &from))?;
        }
    }
    let layer_blob = blobs.join(n.layer.digest.hex());
    fs::rename(n.layer_path, &layer_blob).map_err(io("moving the layer", n.layer_path))?;
    let (config_digest, config_size) = put(&config(n)?)?;
    let manifest = manifest(n.plan, (&config_digest, config_size), n.layer)?;
    let (manifest_digest, manifest_size) = put(&manifest)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{
            "mediaType": MT_MANIFEST,
            "digest": manifest_digest.to_string(),
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": n.plan.name},
        }],
    });
    let p = dir.join("index.json");
    fs::write(&p, index.to_string()).map_err(io("writing", &p))?;
    let p = dir.join("oci-layout");
    fs::write(&p, r#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io("writing", &p))?;
    Ok(manifest_digest)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::layer::Compression;
    use super::*;
    use crate::image::{LayerInfo, ResolvedImage};

    fn plan(config: Value) -> BuildPlan {
        let d = |c: char| Digest::from_hex(&c.to_string().repeat(64)).unwrap();
        BuildPlan {
            builder: ResolvedImage {
                reference: "b:1".into(),
                name: Some("b:1".into()),
                manifest_digest: d('a'),
                config_digest: d('b'),
                config: serde_json::from_value(config).unwrap(),
                layers: vec![LayerInfo {
                    digest: d('c'),
                    diff_id: d('d'),
                    media_type: "application/vnd.docker.image.rootfs.diff.tar.gzip".into(),
                    size: 10,
                }],
                platform: "linux/amd64".into(),
                origin: None,
            },
            builder_layers: Vec::new(),
            name: "app:1".into(),
            source: crate::build::source::Source::open(Path::new("/")).unwrap(),
            ignore: Default::default(),
            source_dest: PathBuf::from("/tmp/src"),
            scripts_dir: PathBuf::from("/s2i"),
            assemble: PathBuf::from("/s2i/assemble"),
            run: PathBuf::from("/s2i/run"),
            user: None,
            uid: 1001,
            gid: 0,
            epoch: 86400,
            compression: Compression::None,
        }
    }

    #[test]
    fn the_config_is_the_builders_with_the_run_script_and_the_layer() {
        let p = plan(json!({
            "architecture": "amd64", "os": "linux", "created": "2024-05-01T10:00:00Z",
            "config": {
                "Entrypoint": ["/usr/bin/container-entrypoint"], "Cmd": ["/s2i/usage"],
                "Env": ["PATH=/bin", "MODE=dev"], "User": "1001",
                "Labels": {"io.openshift.s2i.scripts-url": "image:///s2i"}
            },
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", "d".repeat(64))]},
            "history": [{"created_by": "base"}]
        }));
        let layer = Layer {
            diff_id: Digest::of_bytes(b"layer"),
            tar_size: 1024,
            digest: Digest::of_bytes(b"layer"),
            size: 1024,
            compression: Compression::None,
            entries: 3,
        };
        let src = Digest::of_bytes(b"source");
        let env = [
            ("MODE".to_string(), "prod".to_string()),
            ("EXTRA".to_string(), "1".to_string()),
            ("GITHUB_TOKEN".to_string(), "t".to_string()),
        ];
        let n =
            NewImage { plan: &p, layer: &layer, layer_path: Path::new("/x"), env: &env, source_digest: &src };
        let bytes = config(&n).unwrap();
        assert_eq!(bytes, config(&n).unwrap(), "the same bytes every time");
        let c: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(c["created"], "1970-01-02T00:00:00Z");
        assert_eq!(c["config"]["Entrypoint"], json!(["/usr/bin/container-entrypoint"]));
        assert_eq!(c["config"]["Cmd"], json!(["/s2i/run"]));
        assert_eq!(c["config"]["Env"], json!(["PATH=/bin", "MODE=prod", "EXTRA=1"]));
        assert_eq!(c["config"]["User"], "1001");
        let labels = &c["config"]["Labels"];
        assert_eq!(labels["io.openshift.s2i.scripts-url"], "image:///s2i");
        assert_eq!(labels[BUILDER_LABEL], p.builder.manifest_digest.to_string());
        assert_eq!(labels[SOURCE_DIGEST_LABEL], src.to_string());
        let diff_ids = c["rootfs"]["diff_ids"].as_array().unwrap();
        assert_eq!(diff_ids.len(), 2);
        assert_eq!(diff_ids[1], layer.diff_id.to_string());
        let history = c["history"].as_array().unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[1]["created_by"], "exprun build: /s2i/assemble");
        assert!(!String::from_utf8_lossy(&bytes).contains("/src\""), "no host path");

        let (cd, cs) = (Digest::of_bytes(&bytes), bytes.len());
        let m: Value = serde_json::from_slice(&manifest(&p, (&cd, cs), &layer).unwrap()).unwrap();
        assert_eq!(m["config"]["digest"], cd.to_string());
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers[0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
        assert_eq!(
            layers[1],
            json!({"mediaType": Compression::None.media_type(), "digest": layer.diff_id.to_string(), "size": 1024})
        );
    }
}
