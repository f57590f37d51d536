//! The `redis` add-on, where the robot's OS has `redis-server` (Debian `redis-server`): a server
//! of its own on 127.0.0.1 and an allocated port, its data in its own dir, the default user off
//! and one ACL user per attached app.

use super::provider::{write_server_files, Addon, BackupFrom, Credential, Provider, ServerCommand};
use super::Kind;
use crate::util::PathError;
use std::path::Path;

pub struct Redis;

/// `redis.conf` for the add-on in `dir` with a user per credential.
pub fn config(dir: &Path, port: u16, creds: &[Credential]) -> String {
    let d = dir.display();
    let mut c = format!(
        "# written by robokud for this add-on; rewritten on attach/detach\n\
         bind 127.0.0.1\n\
         port {port}\n\
         protected-mode yes\n\
         daemonize no\n\
         dir {d}/data\n\
         appendonly yes\n\
         user default off\n"
    );
    for cr in creds {
        c.push_str(&format!(
            "user {} on >{} ~* &* +@all\n",
            cr.user, cr.password
        ));
    }
    c
}

impl Provider for Redis {
    fn kind(&self) -> Kind {
        Kind::Redis
    }
    fn needs(&self) -> Option<(&'static str, &'static str)> {
        Some(("redis-server", "redis-server"))
    }
    fn can_share(&self, _addon: &Addon) -> Result<(), String> {
        Ok(())
    }
    fn provision(&self, addon: &Addon, creds: &[Credential]) -> Result<(), PathError> {
        let port = addon.port.unwrap_or(6379);
        write_server_files(
            &addon.dir,
            addon.uid,
            &[("redis.conf", config(&addon.dir, port, creds))],
        )
    }
    fn url(&self, addon: &Addon, cred: &Credential) -> String {
        format!(
            "redis://{}:{}@127.0.0.1:{}/0",
            cred.user,
            cred.password,
            addon.port.unwrap_or(6379)
        )
    }
    fn server(&self, addon: &Addon, program: &Path) -> Option<ServerCommand> {
        Some(ServerCommand {
            command: format!(
                "exec {} {}/redis.conf",
                program.display(),
                addon.dir.display()
            ),
        })
    }
    fn health(&self, addon: &Addon) -> Result<(), String> {
        super::provider::file_present(&addon.dir.join("redis.conf"))
    }
    fn backup_ext(&self, _addon: &Addon) -> Result<&'static str, String> {
        Ok("rdb")
    }
    fn backup(&self, addon: &Addon, from: &BackupFrom, to: &Path) -> Result<(), String> {
        super::backup::redis(addon, from.creds, to)
    }
    fn destroy(&self, addon: &Addon) -> Result<(), PathError> {
        crate::build::remove_tree(&addon.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_user_is_off_and_each_app_has_one() {
        let creds = [Credential {
            app: "ui".into(),
            user: "ui-u".into(),
            password: "secret".into(),
        }];
        let c = config(Path::new("/d"), 20002, &creds);
        assert!(c.contains("bind 127.0.0.1\nport 20002\n"), "{c}");
        assert!(c.contains("user default off\n"));
        assert!(c.contains("user ui-u on >secret ~* &* +@all\n"));
    }
}
