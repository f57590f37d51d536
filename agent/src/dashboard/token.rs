//! The dashboard token: 32 random bytes as hex, made at first start in a 0600 file of the
//! data dir, the same on every later start (bookmarked URLs keep working).

use super::DashboardError;
use crate::util::IoContext;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub fn load_or_create(path: &Path) -> Result<String, DashboardError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let t = text.trim();
            if t.len() < 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(DashboardError::BadToken(
                    path.to_path_buf(),
                    "not a hex token of at least 32 digits; delete the file and restart robokud \
                     to make a new one"
                        .into(),
                ));
            }
            // Someone loosened it: the token guards rollbacks and logs, keep it root's.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .at("chmod 0600", path)?;
            Ok(t.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .at("create", path)?;
            f.write_all(format!("{token}\n").as_bytes())
                .at("write", path)?;
            f.sync_all().at("fsync", path)?;
            Ok(token)
        }
        Err(e) => Err(e).at("read", path)?,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_0600_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dashboard.token");
        let a = load_or_create(&p).unwrap();
        assert_eq!(a.len(), 64);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load_or_create(&p).unwrap(), a);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "tightened again");
        std::fs::write(&p, "short\n").unwrap();
        let e = load_or_create(&p).unwrap_err().to_string();
        assert!(
            e.contains("dashboard.token") && e.contains("delete the file"),
            "{e}"
        );
    }
}
