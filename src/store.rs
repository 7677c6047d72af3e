//! The durable outbox: accepted messages are written to disk before `send` returns, removed
//! once their final result is known, and resumed in order by the next client on the same store.
//!
//! The store sits behind [`OutboxStore`] so another backend can be added; the SQLite one runs in
//! WAL mode with `synchronous=NORMAL`: a commit then survives the process being killed (the
//! WAL is in the OS page cache), which is the failure this store is for; only an OS crash or
//! power loss may drop the last commits. `FULL` would fsync every commit for that extra case.
//! Concurrent senders share commits (group commit), so durability costs a fraction per message.

use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};

use rusqlite::{params, Connection, OpenFlags};

/// Schema version written to `PRAGMA user_version`; bump with a migration step below.
const SCHEMA_VERSION: i64 = 2;
/// Written into the file's header (`PRAGMA application_id`, "WAC1"): a store is recognised as
/// this library's before anything in it is changed.
const APPLICATION_ID: i64 = 0x5741_4331;
/// The tables a store holds; a file with other tables belongs to someone else.
const STORE_TABLES: [&str; 3] = ["outbox", "seen", "seen_order"];

/// A message as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub seq: u64,
    pub channel: String,
    pub recipient: String,
    pub body: bytes::Bytes,
    pub callback_info: Option<String>,
}

/// A place where accepted messages survive a crash.
pub trait OutboxStore: Send {
    /// Every stored message, in acceptance order.
    fn pending(&mut self) -> Result<Vec<StoredMessage>, String>;
    /// Stores a batch atomically.
    fn insert(&mut self, batch: &[StoredMessage]) -> Result<(), String>;
    /// Forgets messages whose final result is known.
    fn remove(&mut self, seqs: &[u64]) -> Result<(), String>;
    /// The newest `limit` webhook dedupe keys, oldest first.
    fn seen_keys(&mut self, limit: usize) -> Result<Vec<String>, String>;
    /// Records webhook dedupe keys, keeping only the newest `keep`.
    fn remember(&mut self, keys: &[String], keep: usize) -> Result<(), String>;
}

pub struct SqliteStore {
    conn: Connection,
}

fn sql_error(what: &str, e: rusqlite::Error) -> String {
    format!("durable outbox: {what}: {e}")
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`. Refuses a missing directory, a read-only,
    /// corrupt or foreign file, a store locked by another client or process, and a schema
    /// newer than this library; it never falls back to memory.
    pub fn open(path: &Path) -> Result<Self, String> {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(format!(
                "durable outbox: directory {} does not exist",
                parent.display()
            ));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|e| sql_error("cannot open", e))?;
        // A locked store is an error at once, not a wait.
        conn.busy_timeout(std::time::Duration::ZERO)
            .map_err(|e| sql_error("cannot configure", e))?;
        // Before anything is changed: a host's own database given by mistake is left alone.
        Self::check_identity(&conn)?;
        // One client owns a store: a second one (or process) is refused instead of both
        // resending the same messages.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(|e| sql_error("cannot lock", e))?;
        let journal: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .map_err(|e| Self::explain(e, "cannot enable WAL"))?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(format!(
                "durable outbox: journal mode is {journal}, WAL is required"
            ));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| sql_error("cannot set synchronous", e))?;
        // Take the exclusive lock now, so that a locked store fails at creation.
        conn.execute_batch("BEGIN IMMEDIATE; COMMIT;")
            .map_err(|e| Self::explain(e, "cannot write"))?;
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(|e| Self::explain(e, "cannot write"))?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(|e| Self::explain(e, "integrity check failed"))?;
        if check != "ok" {
            return Err(format!("durable outbox: the store is corrupt ({check})"));
        }
        let mut store = SqliteStore { conn };
        store.migrate()?;
        Ok(store)
    }

    /// Accepts an empty file, a store of this library, or one written before stores carried
    /// their application id (schema version 1 or 2, only the store's tables); refuses any other
    /// SQLite database.
    fn check_identity(conn: &Connection) -> Result<(), String> {
        let application_id: i64 = conn
            .query_row("PRAGMA application_id", [], |row| row.get(0))
            .map_err(|e| Self::explain(e, "cannot read the file"))?;
        if application_id == APPLICATION_ID {
            return Ok(());
        }
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| Self::explain(e, "cannot read the file"))?;
        let mut statement = conn
            .prepare("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
            .map_err(|e| Self::explain(e, "cannot read the file"))?;
        let names = statement
            .query_map([], |row| row.get::<_, String>(0))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| Self::explain(e, "cannot read the file"))?;
        let only_ours = names
            .iter()
            .all(|name| STORE_TABLES.contains(&name.as_str()));
        let empty = names.is_empty() && version == 0;
        let earlier_store = (1..=SCHEMA_VERSION).contains(&version) && only_ours;
        if application_id == 0 && (empty || earlier_store) {
            return Ok(());
        }
        Err(format!(
            "durable outbox: the file is another application's SQLite database (application id \
             {application_id}, schema version {version}, {} tables), not a store: left unchanged",
            names.len()
        ))
    }

    fn explain(e: rusqlite::Error, what: &str) -> String {
        let text = e.to_string();
        if text.contains("locked") || text.contains("busy") {
            "durable outbox: the store is in use by another client or process".to_string()
        } else if text.contains("readonly") || text.contains("read-only") {
            "durable outbox: the store is read-only".to_string()
        } else if text.contains("not a database") {
            "durable outbox: the file is not a store (not an SQLite database)".to_string()
        } else {
            sql_error(what, e)
        }
    }

    fn migrate(&mut self) -> Result<(), String> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| sql_error("cannot read the schema version", e))?;
        // Each step moves the schema one version up, so any older store reaches the current one.
        let mut version = version;
        while version < SCHEMA_VERSION {
            let step = match version {
                0 => {
                    "CREATE TABLE IF NOT EXISTS outbox (
                        seq INTEGER PRIMARY KEY,
                        channel TEXT NOT NULL,
                        recipient TEXT NOT NULL,
                        body BLOB NOT NULL,
                        callback_info TEXT
                    );
                    PRAGMA user_version = 1;"
                }
                // 2: the webhook dedupe window, so redeliveries after a restart are recognised.
                _ => {
                    "CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY) WITHOUT ROWID;
                    CREATE TABLE IF NOT EXISTS seen_order (n INTEGER PRIMARY KEY, key TEXT NOT NULL);
                    PRAGMA user_version = 2;"
                }
            };
            let tx = self
                .conn
                .transaction()
                .map_err(|e| sql_error("cannot migrate", e))?;
            tx.execute_batch(step)
                .map_err(|e| sql_error("cannot migrate the schema", e))?;
            tx.commit().map_err(|e| sql_error("cannot migrate", e))?;
            version += 1;
        }
        match version {
            SCHEMA_VERSION => Ok(()),
            newer => Err(format!(
                "durable outbox: schema version {newer} was written by a newer library (this one knows {SCHEMA_VERSION})"
            )),
        }
    }
}

impl OutboxStore for SqliteStore {
    fn seen_keys(&mut self, limit: usize) -> Result<Vec<String>, String> {
        let mut statement = self
            .conn
            .prepare("SELECT key FROM (SELECT n, key FROM seen_order ORDER BY n DESC LIMIT ?1) ORDER BY n")
            .map_err(|e| sql_error("cannot read", e))?;
        let rows = statement
            .query_map([limit as i64], |row| row.get(0))
            .map_err(|e| sql_error("cannot read", e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| sql_error("cannot read", e))
    }

    fn remember(&mut self, keys: &[String], keep: usize) -> Result<(), String> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| sql_error("cannot write", e))?;
        {
            let mut seen = tx
                .prepare_cached("INSERT OR IGNORE INTO seen (key) VALUES (?1)")
                .map_err(|e| sql_error("cannot write", e))?;
            let mut order = tx
                .prepare_cached("INSERT INTO seen_order (key) VALUES (?1)")
                .map_err(|e| sql_error("cannot write", e))?;
            for key in keys {
                if seen
                    .execute([key])
                    .map_err(|e| sql_error("cannot write", e))?
                    > 0
                {
                    order
                        .execute([key])
                        .map_err(|e| sql_error("cannot write", e))?;
                }
            }
            // Bounded like the in-memory window: the oldest keys go first.
            tx.execute(
                "DELETE FROM seen WHERE key IN (SELECT key FROM seen_order WHERE n <= (SELECT max(n) FROM seen_order) - ?1)",
                [keep as i64],
            )
            .map_err(|e| sql_error("cannot write", e))?;
            tx.execute(
                "DELETE FROM seen_order WHERE n <= (SELECT max(n) FROM seen_order) - ?1",
                [keep as i64],
            )
            .map_err(|e| sql_error("cannot write", e))?;
        }
        tx.commit().map_err(|e| sql_error("cannot commit", e))
    }

    fn pending(&mut self) -> Result<Vec<StoredMessage>, String> {
        let mut statement = self
            .conn
            .prepare("SELECT seq, channel, recipient, body, callback_info FROM outbox ORDER BY seq")
            .map_err(|e| sql_error("cannot read", e))?;
        let rows = statement
            .query_map([], |row| {
                Ok(StoredMessage {
                    seq: row.get::<_, i64>(0)? as u64,
                    channel: row.get(1)?,
                    recipient: row.get(2)?,
                    body: bytes::Bytes::from(row.get::<_, Vec<u8>>(3)?),
                    callback_info: row.get(4)?,
                })
            })
            .map_err(|e| sql_error("cannot read", e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| sql_error("cannot read", e))
    }

    fn insert(&mut self, batch: &[StoredMessage]) -> Result<(), String> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| sql_error("cannot write", e))?;
        {
            let mut statement = tx
                .prepare_cached("INSERT INTO outbox (seq, channel, recipient, body, callback_info) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(|e| sql_error("cannot write", e))?;
            for m in batch {
                statement
                    .execute(params![
                        m.seq as i64,
                        m.channel,
                        m.recipient,
                        &m.body[..],
                        m.callback_info
                    ])
                    .map_err(|e| sql_error("cannot write", e))?;
            }
        }
        tx.commit().map_err(|e| sql_error("cannot commit", e))
    }

    fn remove(&mut self, seqs: &[u64]) -> Result<(), String> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| sql_error("cannot write", e))?;
        {
            let mut statement = tx
                .prepare_cached("DELETE FROM outbox WHERE seq = ?1")
                .map_err(|e| sql_error("cannot write", e))?;
            for seq in seqs {
                statement
                    .execute([*seq as i64])
                    .map_err(|e| sql_error("cannot write", e))?;
            }
        }
        tx.commit().map_err(|e| sql_error("cannot commit", e))
    }
}

struct Group {
    pending: Vec<StoredMessage>,
    next_seq: u64,
    /// Every seq below this is decided (committed or failed).
    decided_below: u64,
    leader: bool,
    /// Failed commits whose senders have not all been told: each sender of the batch (one per
    /// seq) takes its error once, and the entry goes when the last one has.
    failures: Vec<Failure>,
}

struct Failure {
    seqs: std::ops::Range<u64>,
    untold: u64,
    reason: String,
}

/// Group commit over a store: concurrent `persist` calls share one transaction.
pub struct Durable {
    store: Mutex<Box<dyn OutboxStore>>,
    group: Mutex<Group>,
    committed: Condvar,
}

impl Durable {
    /// Wraps `store`; returns it with the messages to resume.
    pub fn new(mut store: Box<dyn OutboxStore>) -> Result<(Self, Vec<StoredMessage>), String> {
        let pending = store.pending()?;
        let next_seq = pending.last().map_or(1, |m| m.seq + 1);
        let durable = Durable {
            store: Mutex::new(store),
            group: Mutex::new(Group {
                pending: Vec::new(),
                next_seq,
                decided_below: next_seq,
                leader: false,
                failures: Vec::new(),
            }),
            committed: Condvar::new(),
        };
        Ok((durable, pending))
    }

    fn group(&self) -> MutexGuard<'_, Group> {
        self.group.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn store(&self) -> MutexGuard<'_, Box<dyn OutboxStore>> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores one message (its `seq` is assigned here) and returns once it is committed.
    pub fn persist(&self, mut message: StoredMessage) -> Result<u64, String> {
        let mut group = self.group();
        let seq = group.next_seq;
        group.next_seq += 1;
        message.seq = seq;
        group.pending.push(message);
        loop {
            if group.decided_below > seq {
                let failed = group.failures.iter().position(|f| f.seqs.contains(&seq));
                let Some(index) = failed else {
                    return Ok(seq);
                };
                let failure = &mut group.failures[index];
                failure.untold -= 1;
                let reason = if failure.untold == 0 {
                    group.failures.swap_remove(index).reason
                } else {
                    failure.reason.clone()
                };
                return Err(reason);
            }
            if group.leader {
                group = self
                    .committed
                    .wait(group)
                    .unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Lead: commit everything queued so far in one transaction.
            group.leader = true;
            let batch = std::mem::take(&mut group.pending);
            drop(group);
            let result = self.store().insert(&batch);
            group = self.group();
            let end = batch.last().map_or(group.decided_below, |m| m.seq + 1);
            if let Err(reason) = result {
                let start = batch.first().map_or(end, |m| m.seq);
                if start < end {
                    group.failures.push(Failure {
                        seqs: start..end,
                        untold: end - start,
                        reason,
                    });
                }
            }
            group.decided_below = end;
            group.leader = false;
            self.committed.notify_all();
        }
    }

    /// The newest `limit` webhook dedupe keys (to fill the in-memory window at start).
    pub fn seen_keys(&self, limit: usize) -> Vec<String> {
        self.store().seen_keys(limit).unwrap_or_else(|e| {
            tracing::error!("{e}");
            Vec::new()
        })
    }

    /// Records webhook dedupe keys (best effort: on failure a restart may deliver a redelivery).
    pub fn remember(&self, keys: &[String], keep: usize) {
        if keys.is_empty() {
            return;
        }
        if let Err(e) = self.store().remember(keys, keep) {
            tracing::error!("{e}");
        }
    }

    /// Forgets messages whose final result is known (best effort: a failure means they are
    /// sent again after a restart, which at-least-once allows).
    pub fn remove(&self, seqs: &[u64]) {
        if seqs.is_empty() {
            return;
        }
        if let Err(e) = self.store().remove(seqs) {
            tracing::error!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(channel: &str, body: &str) -> StoredMessage {
        StoredMessage {
            seq: 0,
            channel: channel.into(),
            recipient: "4915112345678".into(),
            body: bytes::Bytes::from(body.to_string()),
            callback_info: Some("info".into()),
        }
    }

    #[test]
    fn messages_survive_reopening_in_order() {
        let dir = std::env::temp_dir().join(format!("wa-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("outbox.db");
        let _ = std::fs::remove_file(&path);
        {
            let (durable, pending) =
                Durable::new(Box::new(SqliteStore::open(&path).unwrap())).unwrap();
            assert!(pending.is_empty());
            let seqs: Vec<u64> = (0..5)
                .map(|i| durable.persist(message("1", &format!("m{i}"))).unwrap())
                .collect();
            assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
            durable.remove(&[2, 4]);
            // Locked while open: a second client on the same store is refused.
            let second = SqliteStore::open(&path).err().expect("refused");
            assert!(second.contains("in use"), "{second}");
        }
        let (durable, pending) = Durable::new(Box::new(SqliteStore::open(&path).unwrap())).unwrap();
        let bodies: Vec<_> = pending
            .iter()
            .map(|m| String::from_utf8(m.body.to_vec()).unwrap())
            .collect();
        assert_eq!(bodies, vec!["m0", "m2", "m4"]);
        assert_eq!(pending[0].callback_info.as_deref(), Some("info"));
        assert_eq!(
            durable.persist(message("1", "next")).unwrap(),
            6,
            "numbering continues"
        );
        drop(durable);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_version_1_store_is_migrated_and_the_dedupe_window_is_bounded() {
        let dir = std::env::temp_dir().join(format!("wa-store-v1-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("outbox.db");
        let _ = std::fs::remove_file(&path);
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, channel TEXT NOT NULL, recipient TEXT NOT NULL,
                 body BLOB NOT NULL, callback_info TEXT);
                 INSERT INTO outbox VALUES (7, '1', '49', x'7b7d', NULL);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.pending().unwrap().len(),
            1,
            "rows kept across the migration"
        );
        let keys: Vec<String> = (0..10).map(|i| format!("m:{i}")).collect();
        store.remember(&keys, 4).unwrap();
        store.remember(&["m:9".to_string()], 4).unwrap();
        assert_eq!(
            store.seen_keys(100).unwrap(),
            vec!["m:6", "m:7", "m:8", "m:9"]
        );
        drop(store);
        let version: i64 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_stores_are_refused_clearly() {
        let dir = std::env::temp_dir().join(format!("wa-store-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = SqliteStore::open(&dir.join("no/such/dir/outbox.db"))
            .err()
            .unwrap();
        assert!(missing.contains("does not exist"), "{missing}");
        let junk = dir.join("junk.db");
        std::fs::write(&junk, vec![0x42u8; 8192]).unwrap();
        let e = SqliteStore::open(&junk).err().unwrap();
        assert!(e.contains("not a store"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `threads` senders storing `each` messages at once; every persist's answer.
    fn persist_concurrently(
        durable: &std::sync::Arc<Durable>,
        threads: usize,
        each: usize,
    ) -> Vec<Result<u64, String>> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let d = durable.clone();
                std::thread::spawn(move || {
                    (0..each)
                        .map(|i| d.persist(message("1", &format!("{t}-{i}"))))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    }

    /// Fails every batch that holds a seq divisible by 3, and says which seqs it refused.
    struct FlakyStore {
        refused: std::sync::Arc<Mutex<std::collections::HashSet<u64>>>,
    }

    impl OutboxStore for FlakyStore {
        fn pending(&mut self) -> Result<Vec<StoredMessage>, String> {
            Ok(Vec::new())
        }
        fn insert(&mut self, batch: &[StoredMessage]) -> Result<(), String> {
            if batch.iter().all(|m| m.seq % 3 != 0) {
                return Ok(());
            }
            let mut refused = self.refused.lock().unwrap();
            refused.extend(batch.iter().map(|m| m.seq));
            Err(format!("disk full at {}", batch[0].seq))
        }
        fn remove(&mut self, _: &[u64]) -> Result<(), String> {
            Ok(())
        }
        fn seen_keys(&mut self, _: usize) -> Result<Vec<String>, String> {
            Ok(Vec::new())
        }
        fn remember(&mut self, _: &[String], _: usize) -> Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn every_sender_of_a_failed_commit_is_told_and_nothing_is_kept() {
        let refused = std::sync::Arc::new(Mutex::new(std::collections::HashSet::new()));
        let store = FlakyStore {
            refused: refused.clone(),
        };
        let durable = std::sync::Arc::new(Durable::new(Box::new(store)).unwrap().0);
        let results = persist_concurrently(&durable, 8, 300);
        let refused = refused.lock().unwrap();
        let accepted: Vec<u64> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        let errors = results.iter().filter(|r| r.is_err()).count();
        assert!(accepted.iter().all(|seq| !refused.contains(seq)));
        assert_eq!(
            errors,
            refused.len(),
            "each refused message's sender told once"
        );
        assert_eq!(accepted.len() + errors, 2400);
        assert!(errors > 0);
        // Every failure was taken by all its senders: the list does not grow with failures.
        assert!(durable.group().failures.is_empty());
    }

    #[test]
    fn concurrent_persists_share_commits() {
        let dir = std::env::temp_dir().join(format!("wa-store-group-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("outbox.db");
        let store = SqliteStore::open(&path).unwrap();
        let durable = std::sync::Arc::new(Durable::new(Box::new(store)).unwrap().0);
        let mut all: Vec<u64> = persist_concurrently(&durable, 4, 250)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        all.sort();
        assert_eq!(all, (1..=1000).collect::<Vec<_>>());
        drop(durable);
        let (_, pending) = Durable::new(Box::new(SqliteStore::open(&path).unwrap())).unwrap();
        assert_eq!(pending.len(), 1000);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
