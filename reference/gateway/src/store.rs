//! SQLite persistence of sandbox records.
//!
//! One row per sandbox holds the whole public record (the protobuf `Sandbox`, encoded) beside the
//! token hash, so a restart keeps every sandbox, phase and condition. Every stored version is
//! also appended to `history`, which is what a watch stream must equal, event for event.
//! A file by default; `:memory:` for tests.

use std::path::Path;

use openshell_proto::v1::Sandbox;
use prost::Message;
use rusqlite::{params, Connection, OptionalExtension};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sandbox store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored record does not decode, or decodes to something no gateway writes.
    #[error(
        "sandbox store: the stored record of sandbox {id} is corrupt ({detail}); delete the \
         sandbox (`openshell sandbox delete {id}`) or restore the database from a backup"
    )]
    Corrupt { id: String, detail: String },
    /// The caller handed over a record without its identity (a bug, refused rather than stored).
    #[error("sandbox store: refusing to store a record without metadata")]
    NoMetadata,
}

impl StoreError {
    /// Whether the store cannot take writes right now (disk full, read-only, I/O error, locked):
    /// nothing was changed, and the same request can succeed once the store is writable again.
    pub fn is_unwritable(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                C::DiskFull
                    | C::ReadOnly
                    | C::SystemIoFailure
                    | C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::CannotOpen
                    | C::OutOfMemory
            ),
            _ => false,
        }
    }
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, StoreError>;

/// A stored sandbox: the public record and the hash of its token.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub sandbox: Sandbox,
    pub token_hash: Vec<u8>,
}

/// The sandbox store. Not `Sync`: the lifecycle core owns it behind its lock.
pub struct Store {
    conn: Connection,
    gateway_id: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sandboxes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash BLOB NOT NULL,
    record BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    sandbox_id TEXT NOT NULL,
    resource_version INTEGER NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (sandbox_id, resource_version)
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

impl Store {
    /// Opens (creating if needed) the store at `path`; `:memory:` for a private in-memory one.
    pub fn open(path: &str) -> Result<Store> {
        let conn = if path == ":memory:" {
            Connection::open_in_memory()?
        } else {
            Connection::open(Path::new(path))?
        };
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        // The store's identity, made once: backend resources are labelled with it.
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('gateway_id', ?1)",
            params![uuid::Uuid::new_v4().to_string()],
        )?;
        let gateway_id =
            conn.query_row("SELECT value FROM meta WHERE key = 'gateway_id'", [], |r| {
                r.get::<_, String>(0)
            })?;
        Ok(Store { conn, gateway_id })
    }

    /// The id of the gateway this store belongs to (stable across restarts on one database).
    pub fn gateway_id(&self) -> &str {
        &self.gateway_id
    }

    /// Inserts a new sandbox. Fails on a duplicate id or name.
    pub fn insert(&mut self, row: &Row) -> Result<()> {
        let meta = row
            .sandbox
            .metadata
            .as_ref()
            .ok_or(StoreError::NoMetadata)?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO sandboxes (id, name, token_hash, record) VALUES (?1, ?2, ?3, ?4)",
            params![
                meta.id,
                meta.name,
                row.token_hash,
                row.sandbox.encode_to_vec()
            ],
        )?;
        append_history(&tx, &row.sandbox)?;
        tx.commit()?;
        Ok(())
    }

    /// Replaces a sandbox's record (its resource version already raised by the caller).
    pub fn update(&mut self, sandbox: &Sandbox) -> Result<()> {
        let meta = sandbox.metadata.as_ref().ok_or(StoreError::NoMetadata)?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE sandboxes SET record = ?2 WHERE id = ?1",
            params![meta.id, sandbox.encode_to_vec()],
        )?;
        append_history(&tx, sandbox)?;
        tx.commit()?;
        Ok(())
    }

    /// Removes a sandbox and its history.
    pub fn remove(&mut self, id: &str) -> Result<bool> {
        let tx = self.conn.transaction()?;
        let n = tx.execute("DELETE FROM sandboxes WHERE id = ?1", params![id])?;
        tx.execute("DELETE FROM history WHERE sandbox_id = ?1", params![id])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// The sandbox with this id.
    pub fn get(&self, id: &str) -> Result<Option<Row>> {
        self.query_one(
            "SELECT id, token_hash, record FROM sandboxes WHERE id = ?1",
            id,
        )
    }

    /// The sandbox with this name.
    pub fn get_by_name(&self, name: &str) -> Result<Option<Row>> {
        self.query_one(
            "SELECT id, token_hash, record FROM sandboxes WHERE name = ?1",
            name,
        )
    }

    /// Every sandbox, oldest first; the first corrupt record fails the whole list.
    pub fn list(&self) -> Result<Vec<Row>> {
        self.scan()?.into_iter().collect()
    }

    /// Every sandbox, oldest first, each decoded on its own: a corrupt record is an error in its
    /// place (so a restart can recover every other sandbox).
    pub fn scan(&self) -> Result<Vec<Result<Row>>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, token_hash, record FROM sandboxes ORDER BY rowid")?;
        let raw = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(raw
            .into_iter()
            .map(|(id, hash, record)| decode(id, hash, &record))
            .collect())
    }

    /// Whether a row with this id exists (corrupt or not).
    pub fn id_known(&self, id: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM sandboxes WHERE id = ?1", params![id], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    /// The id of the sandbox named `name`, read from its own column (so it is known even when
    /// the record is corrupt).
    pub fn id_by_name(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM sandboxes WHERE name = ?1",
                params![name],
                |r| r.get::<_, String>(0),
            )
            .optional()?)
    }

    /// Every stored version of a sandbox, in resource-version order.
    pub fn history(&self, id: &str) -> Result<Vec<Sandbox>> {
        let mut stmt = self.conn.prepare(
            "SELECT record FROM history WHERE sandbox_id = ?1 ORDER BY resource_version",
        )?;
        let raw = stmt
            .query_map(params![id], |r| r.get::<_, Vec<u8>>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raw.iter().map(|b| check(id, b.as_slice())).collect()
    }

    fn query_one(&self, sql: &str, key: &str) -> Result<Option<Row>> {
        let raw = self
            .conn
            .query_row(sql, params![key], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .optional()?;
        raw.map(|(id, hash, record)| decode(id, hash, &record))
            .transpose()
    }
}

fn append_history(tx: &rusqlite::Transaction<'_>, sandbox: &Sandbox) -> Result<()> {
    let meta = sandbox.metadata.as_ref().ok_or(StoreError::NoMetadata)?;
    tx.execute(
        "INSERT INTO history (sandbox_id, resource_version, record) VALUES (?1, ?2, ?3)",
        params![
            meta.id,
            meta.resource_version as i64,
            sandbox.encode_to_vec()
        ],
    )?;
    Ok(())
}

fn decode(id: String, token_hash: Vec<u8>, record: &[u8]) -> Result<Row> {
    let sandbox = check(&id, record)?;
    if token_hash.len() != 32 {
        return Err(StoreError::Corrupt {
            id,
            detail: format!("its token hash has {} bytes, not 32", token_hash.len()),
        });
    }
    Ok(Row {
        sandbox,
        token_hash,
    })
}

/// Decodes a record of sandbox `id` and checks what every stored record holds: metadata with
/// this id and a name, and a status. A truncated record can decode (protobuf fields are
/// optional) and still miss them.
fn check(id: &str, record: &[u8]) -> Result<Sandbox> {
    let corrupt = |detail: String| StoreError::Corrupt {
        id: id.to_string(),
        detail,
    };
    let sandbox =
        Sandbox::decode(record).map_err(|e| corrupt(format!("it does not decode: {e}")))?;
    match &sandbox.metadata {
        None => return Err(corrupt("it has no metadata".into())),
        Some(m) if m.id != id => {
            return Err(corrupt(format!(
                "it names the id {:?}",
                crate::hygiene::sanitize(&m.id)
            )))
        }
        Some(m) if m.name.is_empty() => return Err(corrupt("it has no name".into())),
        Some(_) => {}
    }
    if sandbox.status.is_none() {
        return Err(corrupt("it has no status".into()));
    }
    Ok(sandbox)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openshell_proto::datamodel::v1::ObjectMeta;

    fn row(id: &str, name: &str, version: u64) -> Row {
        Row {
            sandbox: Sandbox {
                metadata: Some(ObjectMeta {
                    id: id.into(),
                    name: name.into(),
                    resource_version: version,
                    ..Default::default()
                }),
                status: Some(Default::default()),
                ..Default::default()
            },
            token_hash: vec![7; 32],
        }
    }

    #[test]
    fn records_survive_reopening_a_file_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.db");
        let path = path.to_str().unwrap();
        {
            let mut store = Store::open(path).unwrap();
            store.insert(&row("a", "alpha", 1)).unwrap();
            store.update(&row("a", "alpha", 2).sandbox).unwrap();
        }
        let store = Store::open(path).unwrap();
        let got = store.get_by_name("alpha").unwrap().unwrap();
        assert_eq!(got.sandbox.metadata.unwrap().resource_version, 2);
        assert_eq!(got.token_hash, vec![7; 32]);
        assert_eq!(store.history("a").unwrap().len(), 2);
        let again = Store::open(path).unwrap();
        assert_eq!(
            again.gateway_id(),
            store.gateway_id(),
            "the id survives reopening"
        );
        assert_ne!(
            Store::open(":memory:").unwrap().gateway_id(),
            store.gateway_id()
        );
    }

    #[test]
    fn duplicate_names_are_refused_and_removal_clears_history() {
        let mut store = Store::open(":memory:").unwrap();
        store.insert(&row("a", "alpha", 1)).unwrap();
        assert!(store.insert(&row("b", "alpha", 1)).is_err());
        assert!(store.remove("a").unwrap());
        assert!(store.get("a").unwrap().is_none());
        assert!(store.history("a").unwrap().is_empty());
        assert!(!store.remove("a").unwrap());
    }

    #[test]
    fn corrupt_truncated_and_foreign_records_are_errors_naming_the_sandbox() {
        let mut store = Store::open(":memory:").unwrap();
        store.insert(&row("a", "alpha", 1)).unwrap();
        let good = row("a", "alpha", 1).sandbox.encode_to_vec();
        let foreign = row("b", "beta", 1).sandbox.encode_to_vec();
        for (bad, why) in [
            (vec![0xff, 0xff, 0xff], "does not decode"),
            (good[..good.len() / 2].to_vec(), "a"),
            (Vec::new(), "no metadata"),
            (foreign, "names the id"),
        ] {
            store
                .conn
                .execute(
                    "UPDATE sandboxes SET record = ?1 WHERE id = 'a'",
                    params![bad],
                )
                .unwrap();
            let err = store.get("a").unwrap_err().to_string();
            assert!(err.contains("sandbox a is corrupt"), "{err}");
            assert!(err.contains(why), "{err}");
            assert!(store.list().is_err());
            assert_eq!(store.scan().unwrap().len(), 1);
            assert_eq!(store.id_by_name("alpha").unwrap().as_deref(), Some("a"));
        }
    }
}
