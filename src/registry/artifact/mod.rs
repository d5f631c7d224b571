//! A recorded run as an OCI artifact: `exprun push --run RUN REF` and
//! `exprun replay oci://REF`.
//!
//! ```text
//! manifest  application/vnd.oci.image.manifest.v1+json
//!           artifactType  application/vnd.exprun.run.v1
//!           config        the empty descriptor ({})
//!           subject       the run's image manifest, pushed to the same repository
//!           layers        record.json     application/vnd.exprun.run.record.v1+json
//!                         streams.tar.gz  the kept stdout and stderr
//!                         outputs.tar.gz  output i under i/
//!                         inputs.tar.gz   input i under i/ (only with --include-inputs)
//! ```
//!
//! - [`push`]: plan the artifact (the record with host details reduced,
//!   [`reduce`]; the files archived exactly as recorded, [`archive`]; what
//!   holds secrets, [`sensitive`]), list it, then upload it;
//! - [`fetch`]: store a fetched run under `runs/<id>/` with its files under
//!   `runs/<id>/artifact/` ([`unpack`]), and pull its image.

mod archive;
mod fetch;
mod push;
mod reduce;
mod sensitive;
mod unpack;

pub use fetch::{fetch_run, localise};
pub use push::{plan_push, upload, Layer, PushOptions, PushPlan, PushedRun};
pub use reduce::{is_withheld, WITHHELD};

use super::Error;

/// The artifact type of a pushed run.
pub const ARTIFACT_TYPE: &str = "application/vnd.exprun.run.v1";
const MT_RECORD: &str = "application/vnd.exprun.run.record.v1+json";
const MT_FILES: &str = "application/vnd.exprun.run.files.v1.tar+gzip";
const MT_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const ANN_TITLE: &str = "org.opencontainers.image.title";
const EMPTY_JSON: &[u8] = b"{}";

/// The directory of a fetched run's files, under `runs/<id>/`.
pub const ARTIFACT_DIR: &str = "artifact";
