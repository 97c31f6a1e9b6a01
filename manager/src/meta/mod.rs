//! The metadata database: the only code that runs SQL.
//!
//! SQLite in WAL mode with `synchronous=FULL`: a transaction is durable when it returns, and a
//! crash at any point leaves either all of a transaction or none of it. Blobs live on the file
//! system (`content`); the database records what references them. The schema (version in
//! `PRAGMA user_version`, upgraded by `MIGRATIONS` in order):
//!
//! ```text
//! images(id PK = config digest, manifest_digest, manifest_media_type, index_digest?,
//!        config_size, created, stored_at, size)
//!   ├── image_names(name PK, image_id → images, kind 'tag'|'digest')   repo tags and repo digests
//!   └── image_layers(image_id → images, idx, diff_id, chain_id, blob_digest, blob_size, media_type)
//! snapshots(id PK, key UNIQUE, parent (a key)?, kind 'active'|'committed', size, created)
//! leases(id PK, expires)  ── lease_resources(lease → leases, kind 'blob'|'snapshot', key)
//! containers(id PK, name UNIQUE, snapshot_key (its read-write snapshot), record (JSON))
//! volumes(name PK, record (JSON: labels, anonymous, created))
//! networks(id PK, name UNIQUE, record (JSON: driver, subnet, gateway, bridge, internal, labels))
//! ```
//!
//! Leases keep what an operation in progress has made (blobs, snapshots) safe from garbage
//! collection, across a crash too, until they expire.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Schema migrations, applied in order; entry N brings the schema from version N to N+1.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE images (
    id TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    manifest_media_type TEXT NOT NULL,
    index_digest TEXT,
    config_size INTEGER NOT NULL,
    created TEXT NOT NULL,
    stored_at INTEGER NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE image_names (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('tag', 'digest'))
);
CREATE INDEX image_names_by_image ON image_names(image_id);
CREATE TABLE image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    diff_id TEXT NOT NULL,
    chain_id TEXT NOT NULL,
    blob_digest TEXT NOT NULL,
    blob_size INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    PRIMARY KEY (image_id, idx)
);
CREATE INDEX image_layers_by_chain ON image_layers(chain_id);
CREATE TABLE snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    parent TEXT,
    kind TEXT NOT NULL CHECK (kind IN ('active', 'committed')),
    size INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL
);
CREATE TABLE leases (
    id TEXT PRIMARY KEY,
    expires INTEGER NOT NULL
);
CREATE TABLE lease_resources (
    lease TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('blob', 'snapshot')),
    key TEXT NOT NULL,
    PRIMARY KEY (lease, kind, key)
);
"#,
    r#"
CREATE TABLE containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    snapshot_key TEXT NOT NULL,
    record TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE volumes (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL
);
"#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// A handle on the database; cheap to clone. Calls block: async callers run them through
/// `spawn_blocking` (see `Meta::run`).
#[derive(Clone)]
pub struct Meta {
    conn: Arc<Mutex<Connection>>,
}

/// An image as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    pub id: Digest,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub index_digest: Option<Digest>,
    pub config_size: i64,
    /// RFC 3339 from the config (may be empty).
    pub created: String,
    /// Unix nanoseconds when the store got it.
    pub stored_at: i64,
    /// Bytes of its layers unpacked.
    pub size: i64,
    pub layers: Vec<LayerRecord>,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRecord {
    pub diff_id: Digest,
    pub chain_id: Digest,
    pub blob_digest: Digest,
    pub blob_size: i64,
    pub media_type: String,
}

/// A name of an image: a repo tag (`docker.io/library/busybox:latest`) or a repo digest
/// (`docker.io/library/busybox@sha256:...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    pub name: String,
    pub image_id: Digest,
    pub is_digest: bool,
}

/// A snapshot as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub id: i64,
    pub key: String,
    pub parent: Option<String>,
    pub committed: bool,
    pub size: i64,
    pub created: i64,
}

fn parse_digest(s: String) -> rusqlite::Result<Digest> {
    s.parse()
        .map_err(|e: Error| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))
}

/// Now, in unix nanoseconds.
pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

impl Meta {
    /// Opens (creating) the database at `path` and brings its schema up to date. A database
    /// written by a newer drayd is refused rather than misread.
    pub fn open(path: &Path) -> Result<Meta> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(Error::Conflict(format!(
                "{} has schema version {version}, newer than this drayd's {SCHEMA_VERSION}: use a newer drayd",
                path.display()
            )));
        }
        for (v, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", v as i64 + 1)?;
            tx.commit()?;
        }
        Ok(Meta {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-applied transaction (SQLite rolls
        // back an unfinished one), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` off the async reactor (rule: SQLite never blocks a reactor thread).
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce(&Meta) -> Result<T> + Send + 'static) -> Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| Error::io("database task", std::io::Error::other(e.to_string())))?
    }

    // ---- images ----

    /// Stores an image and points `names` at it, in one transaction. A name that pointed at
    /// another image moves (that image may become dangling, as in docker).
    pub fn put_image(&self, img: &ImageRecord, names: &[ImageName]) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO images (id, manifest_digest, manifest_media_type, index_digest, config_size, created, stored_at, size)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(id) DO UPDATE SET manifest_digest = excluded.manifest_digest,
                 manifest_media_type = excluded.manifest_media_type,
                 index_digest = COALESCE(excluded.index_digest, images.index_digest)",
            params![
                img.id.to_string(),
                img.manifest_digest.to_string(),
                img.manifest_media_type,
                img.index_digest.as_ref().map(|d| d.to_string()),
                img.config_size,
                img.created,
                img.stored_at,
                img.size
            ],
        )?;
        tx.execute(
            "DELETE FROM image_layers WHERE image_id = ?1",
            params![img.id.to_string()],
        )?;
        for (i, l) in img.layers.iter().enumerate() {
            tx.execute(
                "INSERT INTO image_layers (image_id, idx, diff_id, chain_id, blob_digest, blob_size, media_type)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    img.id.to_string(),
                    i as i64,
                    l.diff_id.to_string(),
                    l.chain_id.to_string(),
                    l.blob_digest.to_string(),
                    l.blob_size,
                    l.media_type
                ],
            )?;
        }
        for n in names {
            set_name(&tx, n)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Points one name at an image (tag).
    pub fn set_name(&self, name: &ImageName) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let exists: Option<String> = tx
            .query_row(
                "SELECT id FROM images WHERE id = ?1",
                params![name.image_id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_none() {
            return Err(Error::NotFound(format!("no such image: {}", name.image_id)));
        }
        set_name(&tx, name)?;
        tx.commit()?;
        Ok(())
    }

    /// Removes a name; true when it existed.
    pub fn remove_name(&self, name: &str) -> Result<bool> {
        Ok(self
            .lock()
            .execute("DELETE FROM image_names WHERE name = ?1", params![name])?
            > 0)
    }

    /// Removes an image record with its names and layer rows.
    pub fn remove_image(&self, id: &Digest) -> Result<bool> {
        Ok(self
            .lock()
            .execute("DELETE FROM images WHERE id = ?1", params![id.to_string()])?
            > 0)
    }

    /// The image a name points at.
    pub fn image_id_by_name(&self, name: &str) -> Result<Option<Digest>> {
        let conn = self.lock();
        let id: Option<String> = conn
            .query_row("SELECT image_id FROM image_names WHERE name = ?1", params![name], |r| {
                r.get(0)
            })
            .optional()?;
        id.map(parse_digest).transpose().map_err(Into::into)
    }

    /// Image ids starting with `prefix` (hex, without the algorithm), for short-ID lookups.
    pub fn image_ids_by_prefix(&self, prefix: &str) -> Result<Vec<Digest>> {
        let conn = self.lock();
        let mut st = conn.prepare("SELECT id FROM images WHERE substr(id, 8) LIKE ?1 || '%' ESCAPE '\\'")?;
        let pat = prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let rows = st.query_map(params![pat], |r| parse_digest(r.get(0)?))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(Into::into)
    }

    /// One image with its layers.
    pub fn image(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        let conn = self.lock();
        let row = conn
            .query_row(
                "SELECT id, manifest_digest, manifest_media_type, index_digest, config_size, created, stored_at, size
                 FROM images WHERE id = ?1",
                params![id.to_string()],
                image_row,
            )
            .optional()?;
        let Some(mut img) = row else { return Ok(None) };
        img.layers = layers_of(&conn, &img.id)?;
        Ok(Some(img))
    }

    /// Every image with its layers, newest first.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let conn = self.lock();
        let mut st = conn.prepare(
            "SELECT id, manifest_digest, manifest_media_type, index_digest, config_size, created, stored_at, size
             FROM images ORDER BY stored_at DESC",
        )?;
        let mut imgs = st.query_map([], image_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        for img in &mut imgs {
            img.layers = layers_of(&conn, &img.id)?;
        }
        Ok(imgs)
    }

    /// Every name, sorted.
    pub fn names(&self) -> Result<Vec<ImageName>> {
        let conn = self.lock();
        let mut st = conn.prepare("SELECT name, image_id, kind FROM image_names ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok(ImageName {
                name: r.get(0)?,
                image_id: parse_digest(r.get(1)?)?,
                is_digest: r.get::<_, String>(2)? == "digest",
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(Into::into)
    }

    // ---- snapshots ----

    /// Records a new active snapshot; returns its id (its directory's name).
    pub fn insert_snapshot(&self, key: &str, parent: Option<&str>) -> Result<i64> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO snapshots (key, parent, kind, created) VALUES (?1, ?2, 'active', ?3)",
            params![key, parent, now_nanos()],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                Error::AlreadyExists(format!("snapshot {key} already exists"))
            }
            e => e.into(),
        })?;
        Ok(conn.last_insert_rowid())
    }

    /// A snapshot by key.
    pub fn snapshot(&self, key: &str) -> Result<Option<SnapshotRecord>> {
        let conn = self.lock();
        conn.query_row(
            "SELECT id, key, parent, kind, size, created FROM snapshots WHERE key = ?1",
            params![key],
            snapshot_row,
        )
        .optional()
        .map_err(Into::into)
    }

    /// Every snapshot.
    pub fn snapshots(&self) -> Result<Vec<SnapshotRecord>> {
        let conn = self.lock();
        let mut st = conn.prepare("SELECT id, key, parent, kind, size, created FROM snapshots ORDER BY id")?;
        let rows = st.query_map([], snapshot_row)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(Into::into)
    }

    /// Turns active snapshot `key` into committed snapshot `name` with its size and parent
    /// (layers are unpacked in parallel, each on no parent, and stacked when committed).
    pub fn commit_snapshot(&self, key: &str, name: &str, size: i64, parent: Option<&str>) -> Result<()> {
        let conn = self.lock();
        let n = conn
            .execute(
                "UPDATE snapshots SET key = ?2, kind = 'committed', size = ?3, parent = COALESCE(?4, parent)
                 WHERE key = ?1 AND kind = 'active'",
                params![key, name, size, parent],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                    Error::AlreadyExists(format!("snapshot {name} already exists"))
                }
                e => e.into(),
            })?;
        if n == 0 {
            return Err(Error::NotFound(format!("no active snapshot {key}")));
        }
        Ok(())
    }

    /// Removes a snapshot record; refused while another snapshot names it as parent.
    pub fn remove_snapshot(&self, key: &str) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let children: i64 = tx.query_row("SELECT count(*) FROM snapshots WHERE parent = ?1", params![key], |r| {
            r.get(0)
        })?;
        if children > 0 {
            return Err(Error::Conflict(format!("snapshot {key} has {children} children")));
        }
        tx.execute("DELETE FROM snapshots WHERE key = ?1", params![key])?;
        tx.commit()?;
        Ok(())
    }

    // ---- leases ----

    /// Creates a lease that expires at `expires` (unix nanoseconds).
    pub fn create_lease(&self, id: &str, expires: i64) -> Result<()> {
        self.lock()
            .execute("INSERT INTO leases (id, expires) VALUES (?1, ?2)", params![id, expires])?;
        Ok(())
    }

    /// Adds a resource to a lease.
    pub fn lease_add(&self, lease: &str, kind: ResourceKind, key: &str) -> Result<()> {
        self.lock().execute(
            "INSERT OR IGNORE INTO lease_resources (lease, kind, key) VALUES (?1, ?2, ?3)",
            params![lease, kind.as_str(), key],
        )?;
        Ok(())
    }

    /// Deletes a lease (its resources become collectable unless something else holds them).
    pub fn delete_lease(&self, id: &str) -> Result<()> {
        self.lock().execute("DELETE FROM leases WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// Deletes expired leases; returns how many.
    pub fn expire_leases(&self, now: i64) -> Result<usize> {
        Ok(self
            .lock()
            .execute("DELETE FROM leases WHERE expires <= ?1", params![now])?)
    }

    // ---- containers ----

    /// Stores a new container; a taken name is `AlreadyExists` naming the holder (the UNIQUE
    /// constraint makes one of two concurrent creates win).
    pub fn insert_container(&self, id: &str, name: &str, snapshot_key: &str, record: &str) -> Result<()> {
        let conn = self.lock();
        let r = conn.execute(
            "INSERT INTO containers (id, name, snapshot_key, record) VALUES (?1, ?2, ?3, ?4)",
            params![id, name, snapshot_key, record],
        );
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                let holder: String = conn
                    .query_row("SELECT id FROM containers WHERE name = ?1", params![name], |r| r.get(0))
                    .optional()?
                    .unwrap_or_default();
                Err(Error::AlreadyExists(format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{holder}\". You have to remove (or rename) that container to be able to reuse that name."
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Rewrites a container's record (and its name, for rename).
    pub fn update_container(&self, id: &str, name: &str, record: &str) -> Result<()> {
        let conn = self.lock();
        let r = conn.execute(
            "UPDATE containers SET name = ?2, record = ?3 WHERE id = ?1",
            params![id, name, record],
        );
        match r {
            Ok(0) => Err(Error::NotFound(format!("No such container: {id}"))),
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(Error::AlreadyExists(format!(
                    "Conflict. The container name \"/{name}\" is already in use by another container. You have to remove (or rename) that container to be able to reuse that name."
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn remove_container(&self, id: &str) -> Result<()> {
        self.lock()
            .execute("DELETE FROM containers WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// The containers made from image `image_id`, with whether each is running or paused.
    pub fn containers_of_image(&self, image_id: &str) -> Result<Vec<(String, bool)>> {
        let conn = self.lock();
        let mut st = conn.prepare(
            "SELECT id, json_extract(record, '$.state.status') IN ('running', 'paused', 'restarting')
             FROM containers WHERE json_extract(record, '$.image_id') = ?1 ORDER BY id",
        )?;
        let rows = st.query_map(params![image_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?))
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Every container record (JSON).
    pub fn containers(&self) -> Result<Vec<String>> {
        let conn = self.lock();
        let mut st = conn.prepare("SELECT record FROM containers")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    // ---- networks ----

    /// Stores a network unless its name or ID is taken; true when stored.
    pub fn insert_network(&self, id: &str, name: &str, record: &str) -> Result<bool> {
        let n = self.lock().execute(
            "INSERT OR IGNORE INTO networks (id, name, record) VALUES (?1, ?2, ?3)",
            params![id, name, record],
        )?;
        Ok(n == 1)
    }

    /// Replaces a stored network's record.
    pub fn update_network(&self, id: &str, record: &str) -> Result<()> {
        self.lock()
            .execute("UPDATE networks SET record = ?2 WHERE id = ?1", params![id, record])?;
        Ok(())
    }

    pub fn networks(&self) -> Result<Vec<String>> {
        let conn = self.lock();
        let mut st = conn.prepare("SELECT record FROM networks")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn remove_network(&self, id: &str) -> Result<()> {
        self.lock().execute("DELETE FROM networks WHERE id = ?1", params![id])?;
        Ok(())
    }

    // ---- volumes ----

    /// Stores a volume unless one of that name exists; true when stored.
    pub fn insert_volume(&self, name: &str, record: &str) -> Result<bool> {
        let n = self.lock().execute(
            "INSERT OR IGNORE INTO volumes (name, record) VALUES (?1, ?2)",
            params![name, record],
        )?;
        Ok(n == 1)
    }

    pub fn volume(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .lock()
            .query_row("SELECT record FROM volumes WHERE name = ?1", params![name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn volumes(&self) -> Result<Vec<String>> {
        let conn = self.lock();
        let mut st = conn.prepare("SELECT record FROM volumes")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn remove_volume(&self, name: &str) -> Result<()> {
        self.lock()
            .execute("DELETE FROM volumes WHERE name = ?1", params![name])?;
        Ok(())
    }

    // ---- garbage collection roots ----

    /// True when an image or a live lease references the blob or snapshot `key` (the
    /// collector asks again right before it deletes, under the store's GC gate).
    pub fn is_referenced(&self, kind: ResourceKind, key: &str) -> Result<bool> {
        let conn = self.lock();
        let n: i64 = match kind {
            ResourceKind::Blob => conn.query_row(
                "SELECT (SELECT count(*) FROM images WHERE id = ?1 OR manifest_digest = ?1 OR index_digest = ?1)
                      + (SELECT count(*) FROM image_layers WHERE blob_digest = ?1)
                      + (SELECT count(*) FROM lease_resources WHERE kind = 'blob' AND key = ?1)",
                params![key],
                |r| r.get(0),
            )?,
            ResourceKind::Snapshot => conn.query_row(
                "SELECT (SELECT count(*) FROM image_layers WHERE chain_id = ?1)
                      + (SELECT count(*) FROM lease_resources WHERE kind = 'snapshot' AND key = ?1)
                      + (SELECT count(*) FROM snapshots WHERE parent = ?1)
                      + (SELECT count(*) FROM containers WHERE snapshot_key = ?1)",
                params![key],
                |r| r.get(0),
            )?,
        };
        Ok(n > 0)
    }

    /// Everything the store must keep: blobs (digests) and snapshots (keys) referenced by an
    /// image or by a live lease. Snapshots also keep their parents (the caller walks them).
    pub fn gc_roots(&self) -> Result<(Vec<String>, Vec<String>)> {
        let conn = self.lock();
        let mut blobs = Vec::new();
        let mut snaps = Vec::new();
        {
            let mut st = conn.prepare(
                "SELECT id FROM images UNION SELECT manifest_digest FROM images
                 UNION SELECT index_digest FROM images WHERE index_digest IS NOT NULL
                 UNION SELECT blob_digest FROM image_layers
                 UNION SELECT key FROM lease_resources WHERE kind = 'blob'",
            )?;
            for r in st.query_map([], |r| r.get::<_, String>(0))? {
                blobs.push(r?);
            }
        }
        {
            let mut st = conn.prepare(
                "SELECT chain_id FROM image_layers UNION SELECT key FROM lease_resources WHERE kind = 'snapshot'
                 UNION SELECT snapshot_key FROM containers",
            )?;
            for r in st.query_map([], |r| r.get::<_, String>(0))? {
                snaps.push(r?);
            }
        }
        Ok((blobs, snaps))
    }
}

/// What a lease holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Blob,
    Snapshot,
}

impl ResourceKind {
    fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Blob => "blob",
            ResourceKind::Snapshot => "snapshot",
        }
    }
}

fn set_name(tx: &Transaction<'_>, n: &ImageName) -> Result<()> {
    tx.execute(
        "INSERT INTO image_names (name, image_id, kind) VALUES (?1, ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id, kind = excluded.kind",
        params![
            n.name,
            n.image_id.to_string(),
            if n.is_digest { "digest" } else { "tag" }
        ],
    )?;
    Ok(())
}

fn image_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRecord> {
    Ok(ImageRecord {
        id: parse_digest(r.get(0)?)?,
        manifest_digest: parse_digest(r.get(1)?)?,
        manifest_media_type: r.get(2)?,
        index_digest: r.get::<_, Option<String>>(3)?.map(parse_digest).transpose()?,
        config_size: r.get(4)?,
        created: r.get(5)?,
        stored_at: r.get(6)?,
        size: r.get(7)?,
        layers: Vec::new(),
    })
}

fn snapshot_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SnapshotRecord> {
    Ok(SnapshotRecord {
        id: r.get(0)?,
        key: r.get(1)?,
        parent: r.get(2)?,
        committed: r.get::<_, String>(3)? == "committed",
        size: r.get(4)?,
        created: r.get(5)?,
    })
}

fn layers_of(conn: &Connection, id: &Digest) -> Result<Vec<LayerRecord>> {
    let mut st = conn.prepare(
        "SELECT diff_id, chain_id, blob_digest, blob_size, media_type FROM image_layers WHERE image_id = ?1 ORDER BY idx",
    )?;
    let rows = st.query_map(params![id.to_string()], |r| {
        Ok(LayerRecord {
            diff_id: parse_digest(r.get(0)?)?,
            chain_id: parse_digest(r.get(1)?)?,
            blob_digest: parse_digest(r.get(2)?)?,
            blob_size: r.get(3)?,
            media_type: r.get(4)?,
        })
    })?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::sha256_of(s.as_bytes())
    }

    fn image(id: &str) -> ImageRecord {
        ImageRecord {
            id: d(id),
            manifest_digest: d(&format!("m{id}")),
            manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            index_digest: None,
            config_size: 10,
            created: String::new(),
            stored_at: 1,
            size: 5,
            layers: vec![LayerRecord {
                diff_id: d("l"),
                chain_id: d("l"),
                blob_digest: d("b"),
                blob_size: 3,
                media_type: "x".into(),
            }],
        }
    }

    #[test]
    fn images_names_and_roots() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("meta.db")).unwrap();
        let tag = |name: &str, id: &str| ImageName {
            name: name.into(),
            image_id: d(id),
            is_digest: false,
        };
        m.put_image(&image("a"), &[tag("x:1", "a")]).unwrap();
        m.put_image(&image("b"), &[tag("x:1", "b")]).unwrap();
        assert_eq!(m.image_id_by_name("x:1").unwrap(), Some(d("b")));
        assert_eq!(m.image(&d("a")).unwrap().unwrap().layers.len(), 1);
        assert_eq!(m.image_ids_by_prefix(&d("a").hex()[..6]).unwrap(), vec![d("a")]);
        assert!(m.set_name(&tag("y:1", "nope")).is_err());
        let (blobs, snaps) = m.gc_roots().unwrap();
        assert!(blobs.contains(&d("b").to_string()) && blobs.contains(&d("a").to_string()));
        assert_eq!(snaps, vec![d("l").to_string()]);
        assert!(m.remove_image(&d("a")).unwrap());
        assert_eq!(m.images().unwrap().len(), 1);
        drop(m);
        // Reopening keeps everything and does not re-run migrations.
        let m = Meta::open(&dir.path().join("meta.db")).unwrap();
        assert_eq!(m.names().unwrap().len(), 1);
    }

    #[test]
    fn snapshots_commit_and_children() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("meta.db")).unwrap();
        let id = m.insert_snapshot("extract-1", None).unwrap();
        assert!(matches!(
            m.insert_snapshot("extract-1", None),
            Err(Error::AlreadyExists(_))
        ));
        m.commit_snapshot("extract-1", "c1", 42, None).unwrap();
        let s = m.snapshot("c1").unwrap().unwrap();
        assert!(s.committed && s.id == id && s.size == 42);
        m.insert_snapshot("extract-2", Some("c1")).unwrap();
        assert!(matches!(m.remove_snapshot("c1"), Err(Error::Conflict(_))));
        m.remove_snapshot("extract-2").unwrap();
        m.remove_snapshot("c1").unwrap();
    }

    #[test]
    fn leases_hold_until_deleted_or_expired() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("meta.db")).unwrap();
        m.create_lease("l1", 100).unwrap();
        m.lease_add("l1", ResourceKind::Blob, "sha256:x").unwrap();
        assert_eq!(m.gc_roots().unwrap().0, vec!["sha256:x".to_string()]);
        assert_eq!(m.expire_leases(50).unwrap(), 0);
        assert_eq!(m.expire_leases(100).unwrap(), 1);
        assert!(m.gc_roots().unwrap().0.is_empty());
    }
}
