//! The `mqtt` add-on: a Mosquitto of its own, on 127.0.0.1 and an allocated port, no anonymous
//! clients, one user per attached app (password file in Mosquitto's salted SHA-512 format, so no
//! `mosquitto_passwd` run is needed) and an ACL naming each of them. Attached apps share the
//! topic space (it is their bus); a client with no user, or another app's password, gets nowhere.

use super::provider::{write_server_files, Addon, BackupFrom, Credential, Provider, ServerCommand};
use super::Kind;
use crate::util::PathError;
use base64::Engine as _;
use sha2::{Digest, Sha512};
use std::path::Path;

pub struct Mqtt;

/// `mosquitto.conf` for the add-on in `dir`, listening on `port`.
pub fn config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "# written by robokud for this add-on; rewritten on attach/detach\n\
         per_listener_settings false\n\
         allow_anonymous false\n\
         password_file {d}/passwd\n\
         acl_file {d}/acl\n\
         persistence true\n\
         persistence_location {d}/data/\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n\
         set_tcp_nodelay true\n\
         listener {port} 127.0.0.1\n"
    )
}

/// One password file line: `user:$6$<salt>$<sha512(password || salt)>`, base64 (Mosquitto 2).
pub fn password_line(user: &str, password: &str, salt: &[u8]) -> String {
    let mut h = Sha512::new();
    h.update(password.as_bytes());
    h.update(salt);
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "{user}:$6${}${}",
        b64.encode(salt),
        b64.encode(h.finalize())
    )
}

/// The password file for every credential, each with a fresh random salt.
pub fn password_file(creds: &[Credential]) -> String {
    creds
        .iter()
        .map(|c| {
            let salt: [u8; 12] = super::secure_bytes();
            password_line(&c.user, &c.password, &salt) + "\n"
        })
        .collect()
}

/// The ACL: each attached app's user may use the shared topics; `$SYS` stays closed.
pub fn acl(creds: &[Credential]) -> String {
    creds
        .iter()
        .map(|c| format!("# app {}\nuser {}\ntopic readwrite #\n\n", c.app, c.user))
        .collect()
}

impl Provider for Mqtt {
    fn kind(&self) -> Kind {
        Kind::Mqtt
    }
    fn needs(&self) -> Option<(&'static str, &'static str)> {
        Some(("mosquitto", "mosquitto"))
    }
    fn can_share(&self, _addon: &Addon) -> Result<(), String> {
        Ok(())
    }
    fn provision(&self, addon: &Addon, creds: &[Credential]) -> Result<(), PathError> {
        let port = addon.port.unwrap_or(1883);
        write_server_files(
            &addon.dir,
            addon.uid,
            &[
                ("mosquitto.conf", config(&addon.dir, port)),
                ("passwd", password_file(creds)),
                ("acl", acl(creds)),
            ],
        )
    }
    fn url(&self, addon: &Addon, cred: &Credential) -> String {
        format!(
            "mqtt://{}:{}@127.0.0.1:{}",
            cred.user,
            cred.password,
            addon.port.unwrap_or(1883)
        )
    }
    fn server(&self, addon: &Addon, program: &Path) -> Option<ServerCommand> {
        Some(ServerCommand {
            command: format!(
                "exec {} -c {}/mosquitto.conf",
                program.display(),
                addon.dir.display()
            ),
        })
    }
    fn health(&self, addon: &Addon) -> Result<(), String> {
        super::provider::file_present(&addon.dir.join("mosquitto.conf"))
    }
    fn backup_ext(&self, addon: &Addon) -> Result<&'static str, String> {
        let db = addon.dir.join("data").join("mosquitto.db");
        if db.is_file() {
            Ok("db")
        } else {
            Err(format!(
                "{} has nothing to back up: an mqtt add-on is a bus, and its broker has saved no \
                 retained messages or sessions yet ({} does not exist)",
                addon.name,
                db.display()
            ))
        }
    }
    fn backup(&self, addon: &Addon, _from: &BackupFrom, to: &Path) -> Result<(), String> {
        super::backup::copy_file(&addon.dir.join("data").join("mosquitto.db"), to)
    }
    fn destroy(&self, addon: &Addon) -> Result<(), PathError> {
        crate::build::remove_tree(&addon.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(app: &str) -> Credential {
        Credential {
            app: app.into(),
            user: format!("{app}-u"),
            password: "pw".into(),
        }
    }

    #[test]
    fn the_config_listens_on_loopback_without_anonymous_clients() {
        let c = config(Path::new("/d/addons/nav-mqtt"), 20001);
        assert!(c.contains("listener 20001 127.0.0.1\n"), "{c}");
        assert!(c.contains("allow_anonymous false\n"));
        assert!(c.contains("password_file /d/addons/nav-mqtt/passwd\n"));
        assert!(c.contains("acl_file /d/addons/nav-mqtt/acl\n"));
    }

    #[test]
    fn password_lines_are_mosquittos_salted_sha512() {
        // sha512("pw" || "salt") computed independently (python3 hashlib).
        let line = password_line("nav-u", "pw", b"salt");
        assert_eq!(
            line,
            "nav-u:$6$c2FsdA==$oPeb5nMm4U4xiTpjSVruRPjXz2QaN/TSTSakuCiJtR8qzibNgZZ412rWVSMttxWmz05EMhOAaVT07opmzYU/tg=="
        );
        let file = password_file(&[cred("nav"), cred("ui")]);
        assert_eq!(file.lines().count(), 2);
        assert_ne!(
            password_file(&[cred("nav")]),
            password_file(&[cred("nav")]),
            "a fresh salt each time"
        );
    }

    #[test]
    fn each_attached_app_has_its_own_acl_user() {
        let a = acl(&[cred("nav"), cred("ui")]);
        assert!(a.contains("user nav-u\ntopic readwrite #\n"));
        assert!(a.contains("user ui-u\ntopic readwrite #\n"));
    }

    #[test]
    fn urls_carry_the_apps_credentials_and_the_port() {
        let addon = Addon {
            name: "nav-mqtt".into(),
            kind: Kind::Mqtt,
            app: "nav".into(),
            uid: None,
            port: Some(20001),
            dir: "/d".into(),
            file: None,
        };
        assert_eq!(
            Mqtt.url(&addon, &cred("nav")),
            "mqtt://nav-u:pw@127.0.0.1:20001"
        );
    }
}
