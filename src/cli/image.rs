//! `exprun image ...`: the image store verbs.

use clap::Subcommand;

use super::Globals;
use crate::error::Result;

/// The `image` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {}

/// Run one `image` subcommand.
pub fn run(_globals: &Globals, cmd: ImageCommand) -> Result<i32> {
    match cmd {}
}
