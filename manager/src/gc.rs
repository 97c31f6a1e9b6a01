//! Garbage collection: mark what images and live leases reference (blobs, snapshots and the
//! snapshots' parents), sweep the rest. Runs after `rmi`, on `image prune` / `system prune`,
//! and never concurrently with itself (the store's GC lock).

use std::collections::{HashMap, HashSet};

use crate::digest::Digest;
use crate::error::Result;
use crate::images::Store;
use crate::meta::{now_nanos, ResourceKind};

/// What a collection removed (or, for a dry run, would remove).
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Chain IDs (keys) of removed snapshots.
    pub snapshots: Vec<String>,
    pub blobs: Vec<Digest>,
    pub bytes: u64,
}

static GC_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Unreferenced snapshot keys (child first) and blobs, each with its size.
pub type Unreferenced = (Vec<(String, u64)>, Vec<(Digest, u64)>);

/// What nothing references.
pub fn unreferenced(store: &Store) -> Result<Unreferenced> {
    store.meta.expire_leases(now_nanos())?;
    let (blob_roots, snap_roots) = store.meta.gc_roots()?;
    let blob_roots: HashSet<String> = blob_roots.into_iter().collect();
    let snaps = store.snapshots.list()?;
    let by_key: HashMap<&str, &crate::meta::SnapshotRecord> = snaps.iter().map(|s| (s.key.as_str(), s)).collect();
    let mut keep: HashSet<String> = HashSet::new();
    let mut stack: Vec<String> = snap_roots;
    // Active snapshots are never collected here: they belong to an operation in progress (an
    // unpack, or a container in the next issue) and hold their parents.
    stack.extend(snaps.iter().filter(|s| !s.committed).map(|s| s.key.clone()));
    while let Some(k) = stack.pop() {
        if !keep.insert(k.clone()) {
            continue;
        }
        if let Some(p) = by_key.get(k.as_str()).and_then(|s| s.parent.clone()) {
            stack.push(p);
        }
    }
    // Child-first: a snapshot deeper in a chain before its parent.
    let depth = |start: &str| {
        let mut d = 0usize;
        let mut k = start.to_string();
        while let Some(p) = by_key.get(k.as_str()).and_then(|s| s.parent.clone()) {
            d += 1;
            k = p;
            if d > 1000 {
                break;
            }
        }
        d
    };
    let mut dead: Vec<(String, u64, usize)> = snaps
        .iter()
        .filter(|s| !keep.contains(&s.key))
        .map(|s| (s.key.clone(), s.size.max(0) as u64, depth(&s.key)))
        .collect();
    dead.sort_by_key(|d| std::cmp::Reverse(d.2));
    let blobs = store
        .content
        .list()?
        .into_iter()
        .filter(|(d, _)| !blob_roots.contains(&d.to_string()))
        .collect();
    Ok((dead.into_iter().map(|(k, s, _)| (k, s)).collect(), blobs))
}

/// Removes everything unreferenced. Each removal re-checks, under the store's GC gate held
/// exclusively, that nothing referenced the item meanwhile: an operation in progress leases
/// what it needs under the same gate (shared) before it looks whether it exists, so it either
/// sees the item gone or keeps it.
pub fn collect(store: &Store) -> Result<Report> {
    let _one = GC_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let (snaps, blobs) = unreferenced(store)?;
    let mut report = Report::default();
    for (key, size) in snaps {
        let detached = {
            let _gate = store.gc_gate.write().unwrap_or_else(|p| p.into_inner());
            if store.meta.is_referenced(ResourceKind::Snapshot, &key)? {
                continue;
            }
            store.snapshots.detach(&key)
        };
        match detached {
            Ok(dir) => {
                crate::snapshots::remove_tree(&dir)?;
                report.bytes += size;
                report.snapshots.push(key);
            }
            Err(e) => tracing::warn!(%key, error = %e, "keeping a snapshot that could not be removed"),
        }
    }
    for (d, size) in blobs {
        let _gate = store.gc_gate.write().unwrap_or_else(|p| p.into_inner());
        if store.meta.is_referenced(ResourceKind::Blob, &d.to_string())? {
            continue;
        }
        store.content.remove(&d)?;
        report.bytes += size;
        report.blobs.push(d);
    }
    Ok(report)
}
