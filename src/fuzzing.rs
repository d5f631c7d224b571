//! Entry points for the fuzz targets in `fuzz/` (see docs/security.md): each
//! takes arbitrary bytes and must neither panic nor touch anything outside the
//! directories it is given. Not an API.

use std::path::Path;

pub use crate::image::fuzz::{image_json, layer};
use crate::plan::{self, PlanContext};

/// What a registry or its user hands exprun: a reference, a `WWW-Authenticate`
/// challenge, an auth file (looked up without credential helpers), a
/// registries.conf (and where it sends a few references).
pub fn registry(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = crate::image::reference::RemoteRef::parse(&text);
    let _ = crate::registry::auth::parse_challenge(&text);
    if let Ok(conf) = crate::registry::conf::RegistriesConf::from_text(&text) {
        let by_digest = format!("quay.io/lab/tool@sha256:{}", "a".repeat(64));
        for r in ["python:3.12", by_digest.as_str(), "a.b.example/x/y:z"] {
            if let Ok(r) = crate::image::reference::RemoteRef::parse(r) {
                let _ = conf.endpoints(&r, true);
                let _ = conf.endpoints(&r, false);
            }
        }
    }
    if let Ok(r) = crate::image::reference::RemoteRef::parse("registry.lab:5000/ns/repo:1") {
        if !bytes.windows(11).any(|w| w == b"credHelpers") && !bytes.windows(10).any(|w| w == b"credsStore") {
            let _ = crate::registry::auth::from_bytes(bytes, &r, Path::new("fuzz"));
        }
    }
}

/// Parse `bytes` as an OCI bundle's config.json and plan it, as `create` does,
/// against an empty cgroup layout; `bundle` is a directory with a `rootfs`
/// inside, `cache` a scratch directory for compiled seccomp programs.
pub fn oci_config(bytes: &[u8], bundle: &Path, cache: &Path) {
    let Ok(mut spec) = serde_json::from_slice::<oci_spec::runtime::Spec>(bytes) else { return };
    if let Some(mut root) = spec.root().clone() {
        // The bundle loader makes root.path absolute against the bundle.
        root.set_path(bundle.join("rootfs"));
        spec.set_root(Some(root));
    }
    if let Some(id) = spec.hostname() {
        let _ = crate::spec::bundle::check_id(id);
    }
    let cgroups = crate::cgroups::CgroupHost::parse("", "");
    let host = plan::Host::gather(&cgroups, Some(&spec), None);
    let planned = plan::build(spec, PlanContext::bundle("fuzz", bundle, &bundle.join("state"), &host));
    if let Ok(mut plan) = planned {
        let _ = crate::seccomp::compile_planned(plan.seccomp.as_mut(), &plan.spec, cache);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz targets' seeds, run once as plain tests, so the entry points
    /// stay compiled and sane without cargo-fuzz.
    #[test]
    fn the_entry_points_take_their_seeds() {
        let dir = tempfile::tempdir().unwrap();
        let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
        for target in ["image_json", "layer", "oci_config", "registry"] {
            for e in std::fs::read_dir(seeds.join(target)).unwrap() {
                let bytes = std::fs::read(e.unwrap().path()).unwrap();
                let work = tempfile::tempdir_in(dir.path()).unwrap();
                std::fs::create_dir(work.path().join("rootfs")).unwrap();
                match target {
                    "image_json" => image_json(&bytes),
                    "layer" => layer(&bytes, &work.path().join("dest")),
                    "registry" => registry(&bytes),
                    _ => oci_config(&bytes, work.path(), dir.path()),
                }
                let names: Vec<_> =
                    std::fs::read_dir(work.path()).unwrap().flatten().map(|e| e.file_name()).collect();
                assert!(names.len() <= 2, "{target}: created {names:?}");
            }
        }
    }
}
