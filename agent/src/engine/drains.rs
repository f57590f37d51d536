//! The handlers for log drains: `drains`, `drains:add`, `drains:remove`. The rows are the
//! store's; delivery is the drains' own tasks' (see `crate::drains`), started and stopped here
//! without waiting on them.

use super::command::{Door, EngineError, Result};
use super::Engine;
use crate::drains::{self, url};
use crate::store::DrainRow;
use crate::util::now_ms;
use roboku_wire as wire;
use roboku_wire::drains::DrainInfo;

impl Engine {
    /// Starts every stored drain (at engine start).
    pub(super) fn start_drains(&mut self) {
        match self.store.drains(None) {
            Ok(rows) => {
                for row in &rows {
                    self.drains.start(row);
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the drains failed; none started"),
        }
    }

    /// After a rename: the drains' tasks read the logs under the new name.
    pub(super) fn restart_drains(&mut self, from: &str, to: &str) {
        self.drains.stop_app(from, false);
        match self.store.drains(Some(to)) {
            Ok(rows) => rows.iter().for_each(|row| self.drains.start(row)),
            Err(e) => tracing::error!(app = to, error = %e, "reading the drains failed"),
        }
    }

    fn drain_info(&self, row: &DrainRow) -> DrainInfo {
        let counters = self.drains.counters(&row.id);
        DrainInfo {
            id: row.id.clone(),
            url: url::shown(&row.url),
            token: row.token.clone(),
            created_at: row.created_at,
            running: counters.is_some(),
            counters: counters.unwrap_or_default(),
        }
    }

    pub(super) fn list_drains(&self, app: &str) -> Result<Vec<DrainInfo>> {
        self.cache(app)?;
        let rows = self.store.drains(Some(app))?;
        Ok(rows.iter().map(|r| self.drain_info(r)).collect())
    }

    pub(super) fn add_drain(&mut self, door: Door, app: &str, raw: &str) -> Result<DrainInfo> {
        self.cache(app)?;
        let raw = raw.trim();
        url::parse(raw).map_err(|e| EngineError::BadRequest(e.to_string()))?;
        let existing = self.store.drains(Some(app))?;
        if existing.len() >= drains::MAX_PER_APP {
            return Err(EngineError::Conflict(format!(
                "app {app:?} has {} drains already, the most it may have; remove one first \
                 (`roboku drains:remove ID -a {app}`)",
                existing.len()
            )));
        }
        let (id, token) = drains::new_id_and_token();
        let row = DrainRow {
            id,
            app: app.to_string(),
            url: raw.to_string(),
            token,
            created_at: now_ms(),
            door: door.as_str().to_string(),
        };
        if !self.store.add_drain(&row)? {
            return Err(EngineError::Conflict(format!(
                "app {app:?} has a drain to {} already",
                url::shown(raw)
            )));
        }
        self.drains.start(&row);
        self.event(
            door,
            Some(app),
            &format!("drains:add {} ({})", row.id, url::shown(raw)),
            "ok",
        );
        Ok(self.drain_info(&row))
    }

    /// Removes the drain whose id or URL is `which`.
    pub(super) fn remove_drain(
        &mut self,
        door: Door,
        app: &str,
        which: &str,
    ) -> Result<wire::Done> {
        self.cache(app)?;
        let rows = self.store.drains(Some(app))?;
        let Some(row) = rows
            .iter()
            .find(|r| r.id == which || r.url == which || url::shown(&r.url) == which)
        else {
            return Err(EngineError::NotFound(format!(
                "app {app:?} has no drain {which:?} (see `roboku drains -a {app}`)"
            )));
        };
        self.store.remove_drain(app, &row.id)?;
        self.drains.forget(&row.id);
        let shown = url::shown(&row.url);
        self.event(
            door,
            Some(app),
            &format!("drains:remove {} ({shown})", row.id),
            "ok",
        );
        Ok(wire::Done {
            message: format!("Removed drain {} ({shown}) from {app}", row.id),
        })
    }
}
