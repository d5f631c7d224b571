//! The immutable, content-addressed image store.

/// Image store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {}
