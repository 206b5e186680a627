//! Persistence of the in-process alerts' states (`kb-ops`) in the `alert_states` table
//! (migration 4): one opaque JSON document per alert fingerprint.
//!
//! The store does not interpret the documents; `kb-ops` owns their shape. Saving replaces the
//! whole set in one transaction, so a reader never sees half of an evaluation's states.

use rusqlite::params;

use crate::error::{StoreError, db_err};
use crate::sqlite::SqliteStore;

impl SqliteStore {
    /// Returns every stored alert state as `(fingerprint, json)`, ordered by fingerprint.
    pub fn load_alert_states(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.with_conn(|c| {
            let op = "read alert states";
            let mut st = c
                .prepare_cached("SELECT fingerprint, state FROM alert_states ORDER BY fingerprint")
                .map_err(db_err(op))?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(db_err(op))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err(op))
        })
    }

    /// Replaces every stored alert state with `states` (`(fingerprint, json)`; a fingerprint
    /// given twice keeps the last document), in one transaction.
    pub fn save_alert_states(&self, states: &[(String, String)]) -> Result<(), StoreError> {
        self.with_conn(|c| {
            let op = "write alert states";
            let tx = c.transaction().map_err(db_err(op))?;
            tx.execute("DELETE FROM alert_states", [])
                .map_err(db_err(op))?;
            {
                let mut st = tx
                    .prepare_cached(
                        "INSERT INTO alert_states (fingerprint, state) VALUES (?1, ?2)
                         ON CONFLICT (fingerprint) DO UPDATE SET state = excluded.state",
                    )
                    .map_err(db_err(op))?;
                for (fp, json) in states {
                    st.execute(params![fp, json]).map_err(db_err(op))?;
                }
            }
            tx.commit().map_err(db_err(op))
        })
    }
}
