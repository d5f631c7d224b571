use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::mounts::{holding_mount, unescape_mountinfo};
use super::propagation_name;

#[test]
fn the_holding_mount_is_the_deepest_above_the_path_and_unescaped() {
    let info = "22 1 0:21 / / rw - ext4 /dev/vda rw\n\
                30 22 0:30 / /run rw - tmpfs tmpfs rw\n\
                31 30 0:31 / /run/a\\040b rw - tmpfs tmpfs rw\n\
                32 30 0:32 / /run/ab rw - tmpfs tmpfs rw\n\
                33 30 0:33 / /run/a\\040b rw - tmpfs over rw\n";
    assert_eq!(holding_mount(info, Path::new("/run/a b/rootfs")), Some("/run/a b".into()));
    assert_eq!(holding_mount(info, Path::new("/run/abc")), Some("/run".into()));
    assert_eq!(holding_mount(info, Path::new("/run/ab")), Some("/run/ab".into()));
    assert_eq!(holding_mount(info, Path::new("/srv")), Some("/".into()));
    assert_eq!(unescape_mountinfo("/x\\134y\\011"), PathBuf::from("/x\\y\t"));
    assert_eq!(propagation_name(MsFlags::MS_SHARED | MsFlags::MS_REC), "rshared");
}
