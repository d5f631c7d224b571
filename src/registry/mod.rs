//! OCI distribution registries: `exprun pull` and `exprun push`.
//!
//! - references are [`crate::image::reference::RemoteRef`], parsed where the
//!   store's names are;
//! - [`auth`]: credentials from podman's and docker's auth files, and the
//!   registry's challenge;
//! - [`client`]: the HTTP API of one repository (manifests, resumable blob
//!   downloads, uploads);
//! - [`http`]: requests: credentials for their own origin only, redirects
//!   followed one hop at a time, deadlines and a minimum transfer rate;
//! - [`conf`]: podman's registries.conf: mirrors, locations, blocked registries;
//! - [`pull`]: reference → index → platform → manifest → config → layers (in
//!   parallel, those the store lacks) → the image store, which checks and unpacks
//!   them as for `image import`;
//! - [`push`]: an image of the store, or a run (record, outputs, inputs) as an
//!   OCI artifact;
//! - [`transfer`]: several blobs at once, with a progress bar each.
//!
//! Every blob is verified by digest before the store sees it; credentials go
//! into requests to their own registry (or its token service) only. See docs/images.md.

use std::path::PathBuf;

use crate::digest::Digest;
use crate::image::reference::RemoteRef;

pub mod artifact;
pub mod auth;
pub mod client;
pub mod conf;
pub mod http;
pub mod pull;
pub mod push;
pub mod transfer;

pub use client::{Client, ClientOptions};
pub use transfer::Transfer;

/// Registry errors: each names the registry and the request or document.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reference does not parse.
    #[error("invalid registry reference {reference:?}: {why}")]
    Reference {
        /// As given.
        reference: String,
        /// Why.
        why: String,
    },
    /// The registry cannot be reached, or the connection failed.
    #[error(
        "registry {registry}: cannot {op}: {why}; check the address and the network (a registry \
             without TLS needs --plain-http)"
    )]
    Transport {
        /// The registry.
        registry: String,
        /// The request.
        op: String,
        /// The error.
        why: String,
    },
    /// A request passed its deadline, or a transfer fell under the minimum
    /// rate: not retried.
    #[error("registry {registry}: cannot {op}: {why}; {limits}")]
    Timeout {
        /// The registry.
        registry: String,
        /// The request.
        op: String,
        /// Which limit passed.
        why: String,
        /// The limits, and how to change them.
        limits: String,
    },
    /// A redirect exprun does not follow.
    #[error("registry {registry}: cannot {op}: {why}")]
    Redirect {
        /// The registry.
        registry: String,
        /// The request.
        op: String,
        /// Where it led, and why that is refused.
        why: String,
    },
    /// The registry answered with an unexpected status.
    #[error("registry {registry}: cannot {op}: HTTP {status}: {message}")]
    Status {
        /// The registry.
        registry: String,
        /// The request.
        op: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error messages, or the start of its answer.
        message: String,
    },
    /// Logging in failed.
    #[error("registry {registry}: authentication failed: {why}")]
    Auth {
        /// The registry.
        registry: String,
        /// Why, and what to do.
        why: String,
    },
    /// The registry does not have it.
    #[error("{what}: not found on registry {registry}")]
    NotFound {
        /// The registry.
        registry: String,
        /// The manifest or blob.
        what: String,
    },
    /// An auth file or credential helper is unusable.
    #[error("credentials {}: {why}", path.display())]
    Credentials {
        /// The file or helper.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Content that does not hash to the digest that names it.
    #[error("{what}: digest mismatch: expected {expected}, the content has {found}; refused")]
    DigestMismatch {
        /// The manifest or blob.
        what: String,
        /// The digest it should have.
        expected: Digest,
        /// The digest of what came.
        found: Digest,
    },
    /// Content that is not acceptable.
    #[error("{what}: {why}")]
    Invalid {
        /// The document.
        what: String,
        /// Why, and what to do.
        why: String,
    },
    /// A local file.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The image store.
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    /// A run record.
    #[error(transparent)]
    Record(#[from] crate::record::Error),
    /// The state root (a run to push, the directory a fetched run goes to).
    #[error(transparent)]
    State(#[from] crate::state::Error),
}

/// Parse a reference, as an [`Error`].
pub fn parse_ref(s: &str) -> Result<RemoteRef, Error> {
    RemoteRef::parse(s).map_err(|why| Error::Reference { reference: s.to_string(), why })
}
