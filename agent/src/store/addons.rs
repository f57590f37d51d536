//! Add-ons and their attachments (see `schema.rs` V9 and `crate::addons`).

use super::{optional, SqlContext, Store, StoreError};
use rusqlite::params;

#[derive(Debug, Clone, PartialEq)]
pub struct AddonRow {
    pub name: String,
    pub kind: String,
    pub app: String,
    pub uid: Option<u32>,
    pub port: Option<u16>,
    pub file: Option<String>,
    pub created_at: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttachmentRow {
    pub addon: String,
    pub app: String,
    pub var: String,
    pub user: String,
    pub password: String,
}

const ADDON_COLS: &str = "name, kind, app, uid, port, file, created_at";

fn addon_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AddonRow> {
    Ok(AddonRow {
        name: r.get(0)?,
        kind: r.get(1)?,
        app: r.get(2)?,
        uid: r.get(3)?,
        port: r.get(4)?,
        file: r.get(5)?,
        created_at: r.get(6)?,
    })
}

fn attachment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AttachmentRow> {
    Ok(AttachmentRow {
        addon: r.get(0)?,
        app: r.get(1)?,
        var: r.get(2)?,
        user: r.get(3)?,
        password: r.get(4)?,
    })
}

impl Store {
    /// Records a new add-on with its owner's attachment, in one transaction.
    pub fn create_addon(&mut self, a: &AddonRow, owner: &AttachmentRow) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().at("begin create add-on", &path)?;
        tx.execute(
            &format!("INSERT INTO addons ({ADDON_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
            params![a.name, a.kind, a.app, a.uid, a.port, a.file, a.created_at],
        )
        .at("insert add-on", &path)?;
        insert_attachment(&tx, &path, owner)?;
        tx.commit().at("commit create add-on", &path)
    }

    pub fn addons(&self) -> Result<Vec<AddonRow>, StoreError> {
        self.conn
            .prepare_cached(&format!("SELECT {ADDON_COLS} FROM addons ORDER BY name"))
            .and_then(|mut st| st.query_map([], addon_row)?.collect())
            .at("select add-ons", &self.path)
    }

    pub fn addon(&self, name: &str) -> Result<Option<AddonRow>, StoreError> {
        self.conn
            .prepare_cached(&format!("SELECT {ADDON_COLS} FROM addons WHERE name = ?1"))
            .and_then(|mut st| optional(st.query_row([name], addon_row)))
            .at("select add-on", &self.path)
    }

    /// Deletes the add-on, its attachments and its port.
    pub fn delete_addon(&mut self, name: &str) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().at("begin delete add-on", &path)?;
        tx.execute(
            "DELETE FROM ports WHERE dyno = ?1",
            [format!("addon:{name}")],
        )
        .at("delete add-on port", &path)?;
        tx.execute("DELETE FROM addons WHERE name = ?1", [name])
            .at("delete add-on", &path)?;
        tx.commit().at("commit delete add-on", &path)
    }

    pub fn attach_addon(&mut self, a: &AttachmentRow) -> Result<(), StoreError> {
        insert_attachment(&self.conn, &self.path, a)
    }

    pub fn detach_addon(&mut self, addon: &str, app: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM addon_attachments WHERE addon = ?1 AND app = ?2")
            .and_then(|mut st| st.execute([addon, app]))
            .at("delete attachment", &self.path)
            .map(drop)
    }

    /// Every attachment, of every add-on.
    pub fn attachments(&self) -> Result<Vec<AttachmentRow>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT addon, app, var, user, password FROM addon_attachments ORDER BY addon, app",
            )
            .and_then(|mut st| st.query_map([], attachment_row)?.collect())
            .at("select attachments", &self.path)
    }

    /// A uid for an add-on's server from `range`, unused by any app or add-on and not the host's.
    pub fn free_uid(
        &self,
        (min, max): (u32, u32),
        taken: &dyn Fn(u32) -> bool,
    ) -> Result<u32, StoreError> {
        let used: std::collections::BTreeSet<u32> = self
            .conn
            .prepare_cached(
                "SELECT uid FROM apps WHERE uid IS NOT NULL
                 UNION SELECT uid FROM addons WHERE uid IS NOT NULL",
            )
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .at("select uids", &self.path)?;
        (min..=max)
            .rev()
            .find(|u| !used.contains(u) && !taken(*u))
            .ok_or(StoreError::NoUid { min, max })
    }
}

fn insert_attachment(
    conn: &rusqlite::Connection,
    path: &std::path::Path,
    a: &AttachmentRow,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO addon_attachments (addon, app, var, user, password) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut st| st.execute(params![a.addon, a.app, a.var, a.user, a.password]))
    .at("insert attachment", path)
    .map(drop)
}

#[cfg(test)]
mod tests {
    use crate::store::test_util::store;
    use crate::store::{AddonRow, AttachmentRow};

    #[test]
    fn addons_go_with_their_app_and_uids_are_not_shared() {
        let (_d, mut s) = store();
        s.create_app("nav", 1).unwrap();
        s.create_app("ui", 1).unwrap();
        let nav_uid = s.allocate_uid("nav", (61000, 61010), &|_| false).unwrap();
        let uid = s.free_uid((61000, 61010), &|_| false).unwrap();
        assert_eq!(uid, 61010, "add-on uids come from the top of the range");
        let a = AddonRow {
            name: "nav-mqtt".into(),
            kind: "mqtt".into(),
            app: "nav".into(),
            uid: Some(uid),
            port: Some(20001),
            file: None,
            created_at: 2,
        };
        let att = |app: &str| AttachmentRow {
            addon: "nav-mqtt".into(),
            app: app.into(),
            var: "MQTT_URL".into(),
            user: format!("{app}-u"),
            password: "p".into(),
        };
        s.create_addon(&a, &att("nav")).unwrap();
        s.attach_addon(&att("ui")).unwrap();
        assert!(s.attach_addon(&att("ui")).is_err(), "attached once");
        assert_eq!(s.attachments().unwrap().len(), 2);
        assert_eq!(s.free_uid((61000, 61010), &|_| false).unwrap(), 61009);
        assert_ne!(
            s.allocate_uid("ui", (61000, 61010), &|_| false).unwrap(),
            uid
        );
        assert_ne!(nav_uid, uid);
        s.detach_addon("nav-mqtt", "ui").unwrap();
        assert_eq!(s.attachments().unwrap().len(), 1);
        s.rename_app("nav", "nav2", 3, "cli").unwrap();
        assert_eq!(
            s.addon("nav-mqtt").unwrap().unwrap().app,
            "nav2",
            "moves with a rename"
        );
        assert_eq!(s.attachments().unwrap()[0].app, "nav2");
        s.delete_addon("nav-mqtt").unwrap();
        assert!(s.addons().unwrap().is_empty() && s.attachments().unwrap().is_empty());
    }
}
