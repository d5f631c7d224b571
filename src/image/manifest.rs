//! The OCI (and docker v2) JSON documents the store reads: index, manifest,
//! descriptors, platforms; media-type checks; the manifest synthesised for a
//! docker-archive.
//!
//! These are our own small serde types rather than oci-spec's: we need to accept
//! the docker media types, keep unknown fields out of the way, and give errors
//! that name the document.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Error, Result};
use crate::digest::Digest;

pub(crate) const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub(crate) const MT_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const MT_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const MT_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const MT_DOCKER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
const MT_OCI_NONDISTRIBUTABLE: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";

/// `org.opencontainers.image.ref.name`: a tag, or a full `name:tag`.
pub(crate) const ANN_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and docker ≥ 25's) full image name annotation.
pub(crate) const ANN_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// A content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// A descriptor's platform.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    pub fn matches_host(&self) -> bool {
        self.os == "linux" && self.architecture == host_arch()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The host's architecture in OCI (GOARCH) spelling.
pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        other => other,
    }
}

/// The host platform, `linux/<arch>`.
pub(crate) fn host_platform() -> String {
    format!("linux/{}", host_arch())
}

/// An image index (or docker manifest list).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// An image manifest (OCI or docker v2 schema 2).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

pub(crate) fn is_index(mt: &str) -> bool {
    mt == MT_OCI_INDEX || mt == MT_DOCKER_LIST
}

pub(crate) fn is_manifest(mt: &str) -> bool {
    mt == MT_OCI_MANIFEST || mt == MT_DOCKER_MANIFEST
}

/// Parse a JSON document, naming it in the error.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json { what: what.to_string(), source })
}

/// Parse and check an index.
pub(crate) fn parse_index(bytes: &[u8], what: &str) -> Result<Index> {
    let index: Index = parse_json(bytes, what)?;
    if index.schema_version != 2 {
        return Err(invalid(what, format!("schemaVersion {} (expected 2)", index.schema_version)));
    }
    if let Some(mt) = index.media_type.as_deref().filter(|mt| !is_index(mt)) {
        return Err(invalid(what, format!("media type {mt:?} is not an image index")));
    }
    Ok(index)
}

/// Parse and check a manifest: its own, its config's and its layers' media types.
pub(crate) fn parse_manifest(bytes: &[u8], what: &str) -> Result<Manifest> {
    let m: Manifest = parse_json(bytes, what)?;
    if m.schema_version != 2 {
        return Err(invalid(what, format!("schemaVersion {} (expected 2)", m.schema_version)));
    }
    if let Some(mt) = m.media_type.as_deref().filter(|mt| !is_manifest(mt)) {
        return Err(invalid(what, format!("media type {mt:?} is not an image manifest")));
    }
    let cmt = m.config.media_type.as_str();
    if cmt != MT_OCI_CONFIG && cmt != MT_DOCKER_CONFIG {
        return Err(invalid(
            what,
            format!(
                "config {} has media type {cmt:?}, not an image config (this is not a \
                 container image, or a kind exprun does not run)",
                m.config.digest
            ),
        ));
    }
    for l in &m.layers {
        check_layer_media_type(&l.media_type)
            .map_err(|why| invalid(what, format!("layer {}: {why}", l.digest)))?;
    }
    Ok(m)
}

/// Whether a layer media type is one we unpack. The compression is sniffed from
/// the content anyway; this refuses what is not a plain image layer.
pub(crate) fn check_layer_media_type(mt: &str) -> std::result::Result<(), String> {
    match mt {
        MT_LAYER_TAR | MT_LAYER_GZIP | MT_LAYER_ZSTD | MT_DOCKER_LAYER => Ok(()),
        MT_DOCKER_FOREIGN => Err(format!(
            "media type {mt:?} is a foreign (Windows base) layer whose content is not in the \
             image; exprun runs Linux images only"
        )),
        _ if mt.starts_with(MT_OCI_NONDISTRIBUTABLE) => Err(format!(
            "media type {mt:?} is a non-distributable layer whose content is not in the image; \
             exprun cannot unpack it"
        )),
        _ => Err(format!("unsupported layer media type {mt:?} (expected {MT_LAYER_TAR}, +gzip or +zstd)")),
    }
}

/// The config's diff_ids, checked against the number of layers.
pub(crate) fn diff_ids(
    config: &oci_spec::image::ImageConfiguration,
    layers: usize,
    what: &str,
) -> Result<Vec<Digest>> {
    let rootfs = config.rootfs();
    if rootfs.typ() != "layers" {
        return Err(invalid(what, format!("config rootfs.type is {:?}, not \"layers\"", rootfs.typ())));
    }
    let ids = rootfs
        .diff_ids()
        .iter()
        .map(|s| s.parse::<Digest>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| invalid(what, format!("config rootfs.diff_ids: {e}")))?;
    if ids.len() != layers {
        return Err(invalid(
            what,
            format!("the manifest has {layers} layers but the config's rootfs.diff_ids has {}", ids.len()),
        ));
    }
    Ok(ids)
}

/// Refuse a config built for another platform than `wanted` (the host's when
/// `None`; `exprun pull --platform` asks for another one on purpose).
pub(crate) fn check_config_platform(
    config: &oci_spec::image::ImageConfiguration,
    what: &str,
    wanted: Option<&Platform>,
) -> Result<()> {
    let os = config.os().to_string();
    let arch = config.architecture().to_string();
    let (want_os, want_arch) = match wanted {
        Some(p) => (p.os.as_str(), p.architecture.as_str()),
        None => ("linux", host_arch()),
    };
    if os != want_os || arch != want_arch {
        let why = match wanted {
            Some(p) => format!("the image is for {os}/{arch}, but {p} was asked for"),
            None => format!(
                "the image is for {os}/{arch}, but this host runs {}; import an image \
                 built for this platform",
                host_platform()
            ),
        };
        return Err(invalid(what, why));
    }
    Ok(())
}

fn invalid(what: &str, why: String) -> Error {
    Error::Invalid { what: what.to_string(), why }
}

/// The manifest synthesised for a docker-archive image. Compact JSON with the
/// fields in this fixed order, so the same archive always gives the same digest.
pub(crate) fn synthesise_manifest(config: (&Digest, u64), layers: &[(String, Digest, u64)]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Desc<'a> {
        #[serde(rename = "mediaType")]
        media_type: &'a str,
        digest: &'a Digest,
        size: u64,
    }
    #[derive(Serialize)]
    struct Synth<'a> {
        #[serde(rename = "schemaVersion")]
        schema_version: u32,
        #[serde(rename = "mediaType")]
        media_type: &'a str,
        config: Desc<'a>,
        layers: Vec<Desc<'a>>,
    }
    let m = Synth {
        schema_version: 2,
        media_type: MT_OCI_MANIFEST,
        config: Desc { media_type: MT_OCI_CONFIG, digest: config.0, size: config.1 },
        layers: layers
            .iter()
            .map(|(mt, digest, size)| Desc { media_type: mt, digest, size: *size })
            .collect(),
    };
    // Serialising plain structs of strings and integers cannot fail.
    serde_json::to_vec(&m).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthesised_manifest_is_compact_and_ordered() {
        let c = Digest::of_bytes(b"c");
        let l = Digest::of_bytes(b"l");
        let bytes = synthesise_manifest((&c, 3), &[(MT_LAYER_TAR.into(), l.clone(), 5)]);
        let s = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            s,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{MT_OCI_MANIFEST}","config":{{"mediaType":"{MT_OCI_CONFIG}","digest":"{c}","size":3}},"layers":[{{"mediaType":"{MT_LAYER_TAR}","digest":"{l}","size":5}}]}}"#
            )
        );
        let m = parse_manifest(&bytes, "m").unwrap();
        assert_eq!(m.layers[0].digest, l);
    }

    #[test]
    fn layer_media_types() {
        assert!(check_layer_media_type(MT_LAYER_ZSTD).is_ok());
        assert!(check_layer_media_type(MT_DOCKER_LAYER).is_ok());
        let e = check_layer_media_type(MT_DOCKER_FOREIGN).unwrap_err();
        assert!(e.contains("foreign"), "{e}");
        let e = check_layer_media_type("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")
            .unwrap_err();
        assert!(e.contains("non-distributable"), "{e}");
        assert!(check_layer_media_type("text/plain").is_err());
    }

    #[test]
    fn host_platform_is_oci_spelling() {
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host_platform(), "linux/amd64");
        }
    }

    #[test]
    fn manifest_with_artifact_config_is_refused() {
        let d = Digest::of_bytes(b"x");
        let json = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"{d}","size":1}},"layers":[]}}"#
        );
        let e = parse_manifest(json.as_bytes(), "manifest m").unwrap_err().to_string();
        assert!(e.contains("not an image config"), "{e}");
    }
}
