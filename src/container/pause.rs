//! `exprun pause` and `exprun resume`: the container's cgroup frozen or thawed.

use super::{load, Error, Status};
use crate::cgroups::Cgroup;
use crate::error::Result;
use crate::spawn;
use crate::state::Root;

/// `exprun pause` (`frozen`) and `exprun resume`: freeze or thaw every process of
/// a running container.
pub fn set_paused(root: &Root, id: &str, frozen: bool) -> Result<()> {
    let c = load(root, id)?;
    let status = c.status();
    let (want, why) = if frozen {
        (Status::Running, "only a running container can be paused")
    } else {
        (Status::Paused, "only a paused container can be resumed")
    };
    if status != want {
        return Err(Error::WrongState { id: id.into(), status, why }.into());
    }
    Cgroup::adopt(&c.plan.cgroup).set_frozen(frozen).map_err(spawn::Error::from)?;
    Ok(())
}
