//! `exprun ps`: the host pids of a container's processes.

use super::{container_pids, load};
use crate::error::Result;
use crate::state::Root;

/// `exprun ps`: the host pids of the container's processes.
pub fn pids(root: &Root, id: &str) -> Result<Vec<i32>> {
    let c = load(root, id)?;
    let mut pids = container_pids(&c);
    pids.sort_unstable();
    Ok(pids)
}
