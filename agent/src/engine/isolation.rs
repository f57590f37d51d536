//! Keeping apps apart on disk: each app's slug is readable by that app's group only, and app
//! uids are picked where the host has no user or group of that number.
//!
//! A slug dir is `root:<app gid> 0750` (its contents stay root's and read-only). Slugs are
//! content-addressed, so two apps deploying the very same tree share one slug: it then becomes
//! `0755`, which tells neither app anything it does not already have, and a third app still
//! cannot find it (`slugs/` is 0711, the names are sha256 of the content).

use crate::util::{IoContext, PathError};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Mode of a slug used by one app.
pub const SLUG_MODE: u32 = 0o750;
/// Mode of a slug two apps deployed identically.
pub const SHARED_SLUG_MODE: u32 = 0o755;

/// Hands the slug dir to `gid` (see the module doc). Cheap: one stat, at most a chown and a chmod.
pub fn grant_slug(dir: &Path, gid: u32) -> Result<(), PathError> {
    let meta = std::fs::metadata(dir).at("stat", dir)?;
    let mode = meta.mode() & 0o7777;
    if meta.gid() == 0 {
        std::os::unix::fs::chown(dir, Some(0), Some(gid)).at("chown", dir)?;
        if mode != SLUG_MODE {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(SLUG_MODE))
                .at("chmod", dir)?;
        }
    } else if meta.gid() != gid && mode != SHARED_SLUG_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(SHARED_SLUG_MODE))
            .at("chmod", dir)?;
    }
    Ok(())
}

/// Whether the host already has a user or a group with this number (an app must not get it).
pub fn host_has_id(id: u32) -> bool {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(id));
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(id));
    !matches!((user, group), (Ok(None), Ok(None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slug_is_its_apps_and_shared_only_when_two_apps_hold_it() {
        assert!(nix::unistd::geteuid().is_root(), "needs root, as CI has");
        let tmp = tempfile::tempdir().unwrap();
        let slug = tmp.path().join("abc");
        std::fs::create_dir(&slug).unwrap();
        std::fs::set_permissions(&slug, std::fs::Permissions::from_mode(0o555)).unwrap();
        let look = || {
            let m = std::fs::metadata(&slug).unwrap();
            (m.uid(), m.gid(), m.mode() & 0o7777)
        };
        grant_slug(&slug, 61200).unwrap();
        assert_eq!(look(), (0, 61200, 0o750));
        grant_slug(&slug, 61200).unwrap();
        assert_eq!(look(), (0, 61200, 0o750), "idempotent");
        grant_slug(&slug, 61201).unwrap();
        assert_eq!(look(), (0, 61200, 0o755), "identical slug of a second app");
        grant_slug(&slug, 61200).unwrap();
        assert_eq!(look(), (0, 61200, 0o755), "stays shared");
    }

    #[test]
    fn host_ids_are_known() {
        assert!(host_has_id(0));
        assert!(host_has_id(65534), "nobody/nogroup");
        assert!(
            !host_has_id(61999),
            "the DynamicUser range is free on this host"
        );
    }
}
