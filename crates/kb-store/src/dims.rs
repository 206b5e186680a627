//! Dimension ids: the integer keys the fact tables use for clusters, namespaces, controllers,
//! pods, nodes and label sets, with an in-memory cache.
//!
//! Invariants:
//! - Dimension rows are never deleted or renumbered, so a committed id stays valid; the store
//!   keeps a shared cache of committed ids ([`SharedDims`]).
//! - A writer looks ids up in a snapshot of the shared cache, then in its own cache of ids it
//!   created in its (uncommitted) transaction. Only after its transaction commits are its ids
//!   merged into the shared cache, so a rolled-back id can never be handed out again.
//! - On a miss the resolver runs a plain `INSERT` and takes `last_insert_rowid()`; only when the
//!   row existed after all (the unique constraint fails) does it run a `SELECT id`. Statements
//!   are prepared once per connection. On a hit it runs no SQL at all.
//! - The cache is bounded ([`MAX_CACHED_IDS`] keys in all): past the bound a writer stops
//!   remembering new ids, and a merge that would exceed it replaces the shared cache with the
//!   latest window's ids (the ones the next window most likely needs). A miss costs SQL, never
//!   correctness, so the bound keeps memory flat on a huge response (1 GiB: half a million pods).
//! - Cache keys are built in one reused byte buffer: a kind tag, ids as 8 raw bytes and strings
//!   as their length (8 bytes) then their bytes, so keys are unambiguous for any string content
//!   (annotations may hold anything) and a hit allocates and formats nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};

use crate::error::{StoreError, db_err};

/// The most keys the shared cache plus one writer's own cache hold (about 150 bytes each).
pub(crate) const MAX_CACHED_IDS: usize = 128 * 1024;

/// Committed dimension ids by cache key.
pub(crate) type DimMap = HashMap<Vec<u8>, i64, KeyHash>;

/// The hasher of cache keys: keys are built by the store from Kubecost's names (not chosen by
/// an attacker who can see the hash), so a fast multiply-rotate hash over 8-byte words replaces
/// SipHash, which was about 5% of the writer's time with a miss or two per row. A per-process
/// random seed (from std's `RandomState`) still varies the hash between runs.
#[derive(Clone)]
pub(crate) struct KeyHash(u64);

impl Default for KeyHash {
    fn default() -> Self {
        use std::hash::BuildHasher;
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        KeyHash(*SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0u64)))
    }
}

impl std::hash::BuildHasher for KeyHash {
    type Hasher = WordHasher;
    fn build_hasher(&self) -> WordHasher {
        WordHasher(self.0)
    }
}

/// See [`KeyHash`].
pub(crate) struct WordHasher(u64);

impl WordHasher {
    #[inline]
    fn mix(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for WordHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in chunks.by_ref() {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // A final avalanche so the low bits hashbrown uses depend on every word.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

/// The store-wide cache of committed ids; writers take a snapshot (an `Arc` clone).
#[derive(Default)]
pub(crate) struct SharedDims(Mutex<Arc<DimMap>>);

impl SharedDims {
    /// Returns the current committed ids.
    pub(crate) fn snapshot(&self) -> Arc<DimMap> {
        match self.0.lock() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Adds ids that were just committed.
    pub(crate) fn merge(&self, fresh: DimMap) {
        if fresh.is_empty() {
            return;
        }
        let mut g = match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        // Past the bound, or when the cache is empty (a fresh process: moving the map is
        // cheaper than re-inserting tens of thousands of keys), the fresh ids replace it.
        if g.is_empty() || g.len() + fresh.len() > MAX_CACHED_IDS {
            *g = Arc::new(fresh);
            return;
        }
        // Copy-on-write: clones only when a writer still holds an older snapshot.
        Arc::make_mut(&mut g).extend(fresh);
    }
}

/// Resolves natural keys to ids inside one transaction.
pub(crate) struct Resolver {
    base: Arc<DimMap>,
    fresh: DimMap,
    key: Vec<u8>,
    json: String,
}

impl Resolver {
    /// Makes a resolver over a snapshot of committed ids.
    pub(crate) fn new(base: Arc<DimMap>) -> Resolver {
        Resolver::with_capacity(base, 0)
    }

    /// Makes a resolver with room for `n` new ids before its cache grows (a window writer
    /// expects thousands: growing by doubling rehashes every key several times).
    pub(crate) fn with_capacity(base: Arc<DimMap>, n: usize) -> Resolver {
        Resolver {
            base,
            fresh: DimMap::with_capacity_and_hasher(n, KeyHash::default()),
            key: Vec::with_capacity(128),
            json: String::with_capacity(256),
        }
    }

    /// Returns the ids created by this resolver, to merge once the transaction committed
    /// (dropping the snapshot first, so the merge does not have to copy the shared map).
    pub(crate) fn into_fresh(self) -> DimMap {
        self.fresh
    }

    fn cached(&self) -> Option<i64> {
        self.base
            .get(self.key.as_slice())
            .or_else(|| self.fresh.get(self.key.as_slice()))
            .copied()
    }

    fn remember(&mut self, id: i64) {
        if self.base.len() + self.fresh.len() >= MAX_CACHED_IDS {
            return;
        }
        self.fresh.insert(self.key.clone(), id);
    }

    /// Adds a dimension row the cache did not know ([`insert_then_select`]: the insert and
    /// the select take the same parameters) and remembers its id.
    fn insert_new(
        &mut self,
        conn: &Connection,
        op: &str,
        insert: &str,
        select: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<i64, StoreError> {
        let id = insert_then_select(conn, insert, select, params).map_err(db_err(op))?;
        self.remember(id);
        Ok(id)
    }

    fn start_key(&mut self, tag: u8) {
        self.key.clear();
        self.key.push(tag);
    }

    fn push_str(&mut self, s: &str) {
        self.key.extend_from_slice(&(s.len() as u64).to_le_bytes());
        self.key.extend_from_slice(s.as_bytes());
    }

    fn push_id(&mut self, id: i64) {
        self.key.extend_from_slice(&id.to_le_bytes());
    }

    /// Returns the id of a cluster by the bridge's name.
    pub(crate) fn cluster(&mut self, conn: &Connection, name: &str) -> Result<i64, StoreError> {
        self.start_key(b'c');
        self.push_str(name);
        if let Some(id) = self.cached() {
            return Ok(id);
        }
        let op = "resolve cluster id";
        self.insert_new(
            conn,
            op,
            "INSERT INTO clusters (name) VALUES (?1)",
            "SELECT id FROM clusters WHERE name = ?1",
            params![name],
        )
    }

    /// Returns the id of a namespace of a cluster.
    pub(crate) fn namespace(
        &mut self,
        conn: &Connection,
        cluster_id: i64,
        name: &str,
    ) -> Result<i64, StoreError> {
        self.start_key(b'n');
        self.push_id(cluster_id);
        self.push_str(name);
        if let Some(id) = self.cached() {
            return Ok(id);
        }
        let op = "resolve namespace id";
        self.insert_new(
            conn,
            op,
            "INSERT INTO namespaces (cluster_id, name) VALUES (?1, ?2)",
            "SELECT id FROM namespaces WHERE cluster_id = ?1 AND name = ?2",
            params![cluster_id, name],
        )
    }

    /// Returns the id of a controller (kind and name) of a namespace.
    pub(crate) fn controller(
        &mut self,
        conn: &Connection,
        namespace_id: i64,
        kind: &str,
        name: &str,
    ) -> Result<i64, StoreError> {
        self.start_key(b'k');
        self.push_id(namespace_id);
        self.push_str(kind);
        self.push_str(name);
        if let Some(id) = self.cached() {
            return Ok(id);
        }
        let op = "resolve controller id";
        self.insert_new(
            conn,
            op,
            "INSERT INTO controllers (namespace_id, kind, name) VALUES (?1, ?2, ?3)",
            "SELECT id FROM controllers WHERE namespace_id = ?1 AND kind = ?2 AND name = ?3",
            params![namespace_id, kind, name],
        )
    }

    /// Returns the id of a node of a cluster; a provider id fills in one stored empty.
    pub(crate) fn node(
        &mut self,
        conn: &Connection,
        cluster_id: i64,
        name: &str,
        provider_id: &str,
    ) -> Result<i64, StoreError> {
        self.start_key(b'o');
        self.push_id(cluster_id);
        self.push_str(name);
        if let Some(id) = self.cached() {
            return Ok(id);
        }
        let op = "resolve node id";
        // A plain INSERT first: an upsert with RETURNING cost about five times as much per new
        // node (SQLite buffers RETURNING rows and journals the statement). Only a node that
        // exists already is read back, and gets the provider id when it had none.
        let id = match conn
            .prepare_cached("INSERT INTO nodes (cluster_id, name, provider_id) VALUES (?1, ?2, ?3)")
            .and_then(|mut st| st.execute(params![cluster_id, name, provider_id]))
        {
            Ok(_) => conn.last_insert_rowid(),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
            {
                let (id, stored): (i64, String) = conn
                    .prepare_cached(
                        "SELECT id, provider_id FROM nodes WHERE cluster_id = ?1 AND name = ?2",
                    )
                    .and_then(|mut st| {
                        st.query_row(params![cluster_id, name], |r| Ok((r.get(0)?, r.get(1)?)))
                    })
                    .map_err(db_err(op))?;
                if stored.is_empty() && !provider_id.is_empty() {
                    conn.prepare_cached("UPDATE nodes SET provider_id = ?2 WHERE id = ?1")
                        .and_then(|mut st| st.execute(params![id, provider_id]))
                        .map_err(db_err(op))?;
                }
                id
            }
            Err(e) => return Err(db_err(op)(e)),
        };
        self.remember(id);
        Ok(id)
    }

    /// Returns the id of a pod (by controller, name and node).
    pub(crate) fn pod(
        &mut self,
        conn: &Connection,
        controller_id: i64,
        name: &str,
        node_id: i64,
    ) -> Result<i64, StoreError> {
        self.start_key(b'p');
        self.push_id(controller_id);
        self.push_id(node_id);
        self.push_str(name);
        if let Some(id) = self.cached() {
            return Ok(id);
        }
        let op = "resolve pod id";
        self.insert_new(
            conn,
            op,
            "INSERT INTO pods (controller_id, name, node_id) VALUES (?1, ?2, ?3)",
            "SELECT id FROM pods WHERE controller_id = ?1 AND name = ?2 AND node_id = ?3",
            params![controller_id, name, node_id],
        )
    }

    /// Returns the id of a label set (labels or annotations), stored as a JSON object.
    pub(crate) fn labels(
        &mut self,
        conn: &Connection,
        labels: &[(String, String)],
    ) -> Result<i64, StoreError> {
        self.start_key(b'l');
        for (k, v) in labels {
            self.push_str(k);
            self.push_str(v);
        }
        if let Some(id) = self.cached() {
            return Ok(id);
        }
        labels_json(&mut self.json, labels);
        self.label_set_miss(conn)
    }

    /// Returns the id of a list of services, stored as a JSON array in `label_sets`.
    pub(crate) fn services(
        &mut self,
        conn: &Connection,
        services: &[String],
    ) -> Result<i64, StoreError> {
        self.start_key(b's');
        for s in services {
            self.push_str(s);
        }
        if let Some(id) = self.cached() {
            return Ok(id);
        }
        services_json(&mut self.json, services);
        self.label_set_miss(conn)
    }

    fn label_set_miss(&mut self, conn: &Connection) -> Result<i64, StoreError> {
        let op = "resolve label set id";
        let hash = fnv1a(self.json.as_bytes());
        let id = insert_then_select(
            conn,
            "INSERT INTO label_sets (hash, json) VALUES (?1, ?2)",
            "SELECT id FROM label_sets WHERE hash = ?1 AND json = ?2",
            params![hash, self.json.as_str()],
        )
        .map_err(db_err(op))?;
        self.remember(id);
        Ok(id)
    }
}

/// Writes a label set as the JSON object serde_json writes for it (`{"k":"v",...}`, compact,
/// keys in byte order, only `"`, `\\` and control characters escaped), without building a
/// `serde_json::Value`. The text must stay byte-identical to serde_json's: it is the natural
/// key of `label_sets`. `labels` come sorted by key with unique keys (the model's promise); a
/// list that is not is serialised through a map, as before, so it still gets serde_json's
/// order and its last-value-wins.
fn labels_json(out: &mut String, labels: &[(String, String)]) {
    out.clear();
    if !labels.windows(2).all(|w| w[0].0 < w[1].0) {
        let map: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        out.push_str(&serde_json::Value::Object(map).to_string());
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(out, k);
        out.push(':');
        json_string(out, v);
    }
    out.push('}');
}

/// Writes a list of services as the JSON array serde_json writes for it.
fn services_json(out: &mut String, services: &[String]) {
    out.clear();
    out.push('[');
    for (i, s) in services.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(out, s);
    }
    out.push(']');
}

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it.
fn json_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x09 => "\\t",
            0x0a => "\\n",
            0x0c => "\\f",
            0x0d => "\\r",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(s.get(start..i).unwrap_or_default());
        if esc.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

/// Inserts a dimension row the cache does not know and returns its new id; when the row
/// exists after all (another writer added it, or the cache was cold), the unique constraint
/// fails and the existing id is selected. A failed INSERT undoes only itself in SQLite, so the
/// window's transaction goes on. The plain INSERT (no `ON CONFLICT ... RETURNING`, no row
/// cursor) is the fast path: on a new cluster every pod and label set takes it once.
fn insert_then_select(
    conn: &Connection,
    insert: &str,
    select: &str,
    params: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<i64> {
    match conn.prepare_cached(insert)?.execute(params) {
        Ok(_) => Ok(conn.last_insert_rowid()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            conn.prepare_cached(select)?.query_row(params, |r| r.get(0))
        }
        Err(e) => Err(e),
    }
}

/// 64-bit FNV-1a, as a signed integer for SQLite: a stable hash that narrows label-set lookups.
fn fnv1a(bytes: &[u8]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;

    #[test]
    fn label_json_is_serde_json_s() {
        let tricky = [
            "",
            "plain",
            "q\"uote",
            "back\\slash",
            "ctl\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f}",
            "é ü 日本 🎉 </script>",
            "\\\"",
        ];
        let mut out = String::new();
        for k in tricky {
            for v in tricky {
                let labels = vec![
                    (k.to_string(), v.to_string()),
                    ("zz".to_string(), v.to_string()),
                ];
                let labels: Vec<(String, String)> = if k < "zz" {
                    labels
                } else {
                    vec![labels[0].clone()]
                };
                let map: serde_json::Map<String, serde_json::Value> = labels
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                labels_json(&mut out, &labels);
                assert_eq!(out, serde_json::Value::Object(map).to_string());
                let services = vec![k.to_string(), v.to_string()];
                services_json(&mut out, &services);
                assert_eq!(out, serde_json::Value::from(services.clone()).to_string());
            }
        }
        // Unsorted or duplicate keys: serde_json's map order and last value win.
        let odd = vec![
            ("b".to_string(), "1".to_string()),
            ("a".to_string(), "2".to_string()),
            ("b".to_string(), "3".to_string()),
        ];
        labels_json(&mut out, &odd);
        assert_eq!(out, r#"{"a":"2","b":"3"}"#);
        labels_json(&mut out, &[]);
        assert_eq!(out, "{}");
        services_json(&mut out, &[]);
        assert_eq!(out, "[]");
    }

    #[test]
    fn ids_are_stable_and_cached() {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn, schema::SCHEMA_VERSION).unwrap();
        let mut r = Resolver::new(Arc::new(DimMap::default()));
        let c = r.cluster(&conn, "a").unwrap();
        assert_eq!(r.cluster(&conn, "a").unwrap(), c);
        let n1 = r.namespace(&conn, c, "x").unwrap();
        let n2 = r.namespace(&conn, c, "y").unwrap();
        assert_ne!(n1, n2);
        let node = r.node(&conn, c, "n1", "").unwrap();
        // A later provider id fills the empty one.
        let mut r2 = Resolver::new(Arc::new(DimMap::default()));
        assert_eq!(r2.node(&conn, c, "n1", "aws:///i-1").unwrap(), node);
        let pid: String = conn
            .query_row("SELECT provider_id FROM nodes WHERE id = ?1", [node], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(pid, "aws:///i-1");
        let l1 = r.labels(&conn, &[("app".into(), "web".into())]).unwrap();
        let l2 = r2.labels(&conn, &[("app".into(), "web".into())]).unwrap();
        assert_eq!(l1, l2);
        let e = r.labels(&conn, &[]).unwrap();
        let s = r.services(&conn, &[]).unwrap();
        assert_ne!(
            e, s,
            "an empty object and an empty array are different sets"
        );
        // Key parts cannot run together: ("ab","") differs from ("a","b").
        let k1 = r.controller(&conn, n1, "ab", "").unwrap();
        let k2 = r.controller(&conn, n1, "a", "b").unwrap();
        assert_ne!(k1, k2);
        let shared = SharedDims::default();
        let fresh = r.into_fresh();
        let len = fresh.len();
        shared.merge(fresh);
        assert_eq!(shared.snapshot().len(), len);
    }
}
