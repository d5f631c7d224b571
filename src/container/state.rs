//! `exprun state` and `exprun list`: the OCI state of one container or all.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use serde::Serialize;

use super::{load, Status, STATE_FILE};
use crate::error::Result;
use crate::state::Root;

/// The OCI runtime spec's state, as `exprun state` prints it (with runc's extra
/// fields rootfs, created and owner).
#[derive(Debug, Clone, Serialize)]
pub struct OciState {
    #[serde(rename = "ociVersion")]
    oci_version: &'static str,
    id: String,
    status: Status,
    pid: i32,
    bundle: PathBuf,
    rootfs: PathBuf,
    created: String,
    owner: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// `exprun state`: the OCI state.
pub fn state(root: &Root, id: &str) -> Result<OciState> {
    let c = load(root, id)?;
    let status = c.status();
    let s = c.state;
    Ok(OciState {
        oci_version: "1.2.0",
        id: s.id,
        status,
        // The OCI state has no pid once the process has exited.
        pid: if status == Status::Stopped { 0 } else { s.pid },
        bundle: s.bundle,
        rootfs: s.rootfs,
        created: s.created,
        owner: s.owner,
        annotations: s.annotations,
    })
}

/// Every container under `root`.
pub fn list(root: &Root) -> Vec<OciState> {
    let mut out = Vec::new();
    for e in fs::read_dir(root.containers_dir()).into_iter().flatten().flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        if e.path().join(STATE_FILE).exists() {
            if let Ok(s) = state(root, &id) {
                out.push(s);
            }
        }
    }
    out.sort_by(|a, b| a.created.cmp(&b.created));
    out
}
