//! exprun: a daemonless container runtime for reproducible experiments.
//!
//! # Code map
//!
//! - [`cli`]: argument parsing and the verbs; thin, calls into the modules below.
//! - [`image`]: the immutable, content-addressed image store (import, resolve, gc).
//! - [`digest`]: `sha256:` digests and hashing readers and writers.
//! - [`fsutil`]: atomic writes, advisory locks, random ids.
//! - [`error`]: the top-level error and the exit-code contract.
//!
//! # Invariants
//!
//! - The image store never changes stored content and knows nothing of containers.
//! - Nothing before the plan has side effects; every bad combination is refused
//!   there with a message that names the field and what to do.
//! - The child side of spawn reads only the plan.
//! - A run leaves nothing behind that it was not asked to keep.

pub mod cli;
pub mod digest;
pub mod error;
pub mod fsutil;
pub mod image;

pub use error::{Error, Result};
