//! `logs -f`: what a log holds, then what is appended, across rotations (the writer renames
//! `NAME` to `NAME.1` and starts a new `NAME`), whoever the writer is (the dray shim or
//! drayd). One small thread per follower, woken by inotify on the log's directory.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::sync::mpsc;

use super::{decode, read, Entry, Filter, Position};

/// The current file of a log, read from where the follower is.
struct Cursor {
    reader: BufReader<File>,
    inode: u64,
    partial: Vec<u8>,
}

impl Cursor {
    fn open(path: &Path, offset: u64) -> Option<Cursor> {
        let mut f = File::open(path).ok()?;
        let inode = f.metadata().ok()?.ino();
        f.seek(SeekFrom::Start(offset)).ok()?;
        Some(Cursor {
            reader: BufReader::new(f),
            inode,
            partial: Vec::new(),
        })
    }

    /// Sends every complete line now in the file; false when the receiver is gone.
    fn drain(&mut self, filter: &Filter, tx: &mpsc::Sender<Entry>) -> bool {
        loop {
            let n = match self.reader.read_until(b'\n', &mut self.partial) {
                Ok(n) => n,
                Err(_) => return true,
            };
            if n == 0 || !self.partial.ends_with(b"\n") {
                return true;
            }
            let line = std::mem::take(&mut self.partial);
            if let Some(e) = decode(&line[..line.len() - 1]).filter(|e| filter.wants(e)) {
                if tx.blocking_send(e).is_err() {
                    return false;
                }
            }
        }
    }
}

/// The file written after the one with inode `after` (the oldest one when that is gone).
///
/// The writer may rotate while we look: every name then points one file further. So the
/// order comes from a [`snapshot`] of the names at one moment, and the file opened is checked
/// to be the one the snapshot named; otherwise we look again. (Looking up each name at a
/// different moment once made a file that had moved on look gone, and the follower sent the
/// oldest file again.)
fn next_file(path: &Path, max_file: u32, after: Option<u64>) -> Option<Cursor> {
    for _ in 0..SCAN_TRIES {
        let files = snapshot(path, max_file);
        let idx = after.and_then(|ino| files.iter().position(|(_, i)| *i == ino));
        let next = match idx {
            Some(i) => files.get(i + 1),
            None => files.first(),
        };
        let Some((p, ino)) = next else {
            return Cursor::open(path, 0);
        };
        match Cursor::open(p, 0) {
            Some(c) if c.inode == *ino => return Some(c),
            // Rotated (or removed) since the snapshot.
            _ => continue,
        }
    }
    Cursor::open(path, 0)
}

/// How often a lookup is repeated while the writer keeps rotating.
const SCAN_TRIES: usize = 100;

/// The log's files with their inodes, oldest first, as they were at one moment: two scans in
/// a row that agree (a rotation renames files and makes a new inode, so a scan that overlaps
/// one differs from the next). Between renames the names are still in write order, a name
/// missing at most.
fn snapshot(path: &Path, max_file: u32) -> Vec<(PathBuf, u64)> {
    let scan = || -> Vec<(PathBuf, u64)> {
        dray_logfile::files(path, max_file)
            .into_iter()
            .filter_map(|p| inode_of(&p).map(|i| (p, i)))
            .collect()
    };
    let mut last = scan();
    for _ in 0..SCAN_TRIES {
        let now = scan();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

fn inode_of(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.ino())
}

/// Sends the entries of the log at `path` that pass `filter`, then (with `follow`) the new
/// ones until `stopped` is set and the log has no more, or the receiver goes away.
pub fn follow(
    path: PathBuf,
    max_file: u32,
    filter: Filter,
    follow: bool,
    stopped: Arc<AtomicBool>,
    tx: mpsc::Sender<Entry>,
) {
    // The watch comes first: nothing appended after the read below is missed.
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok();
    if let (Some(i), Some(dir)) = (&inotify, path.parent()) {
        let _ = i.add_watch(
            dir,
            AddWatchFlags::IN_MODIFY
                | AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_MOVED_FROM,
        );
    }
    let (entries, pos) = match read(&path, max_file, &filter) {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(log = %path.display(), "reading the log: {e}");
            return;
        }
    };
    for e in entries {
        if tx.blocking_send(e).is_err() {
            return;
        }
    }
    if !follow {
        return;
    }
    // After the tail, follow without it.
    let filter = Filter { tail: None, ..filter };
    let mut cur = start_cursor(&path, max_file, pos);
    loop {
        let done = stopped.load(Ordering::SeqCst);
        if let Some(c) = cur.as_mut() {
            if !c.drain(&filter, &tx) {
                return;
            }
        }
        // Rotated: the old file is complete now; what was appended to it between the drain
        // above and the rotation is read, then comes the file written after it (several
        // rotations may have happened since the last look).
        if inode_of(&path).is_some_and(|i| cur.as_ref().map(|c| c.inode) != Some(i)) {
            if let Some(c) = cur.as_mut() {
                if !c.drain(&filter, &tx) {
                    return;
                }
            }
            // None only in a race with the writer: keep the place and look again.
            if let Some(next) = next_file(&path, max_file, cur.as_ref().map(|c| c.inode)) {
                cur = Some(next);
                continue;
            }
        }
        if done || tx.is_closed() {
            return;
        }
        wait(inotify.as_ref());
    }
}

/// The cursor after `read`: the file `read` ended in, at `pos`, wherever rotations have moved
/// it since (the follow loop then reads the rest of it and goes on with the files after it).
fn start_cursor(path: &Path, max_file: u32, pos: Position) -> Option<Cursor> {
    if pos.inode == 0 {
        // `read` found no current file.
        return Cursor::open(path, 0);
    }
    for _ in 0..SCAN_TRIES {
        let Some((p, _)) = snapshot(path, max_file).into_iter().find(|(_, i)| *i == pos.inode) else {
            // Rotated out of the kept files: the oldest one left comes after it.
            return next_file(path, max_file, None);
        };
        match Cursor::open(&p, pos.offset) {
            Some(c) if c.inode == pos.inode => return Some(c),
            // Moved on since the snapshot.
            _ => continue,
        }
    }
    Cursor::open(path, 0)
}

/// Waits for a change in the log's directory (or 250 ms: a stop is noticed even when the
/// writer has nothing more to say).
fn wait(inotify: Option<&Inotify>) {
    let Some(i) = inotify else {
        std::thread::sleep(Duration::from_millis(100));
        return;
    };
    let mut fds = [nix::poll::PollFd::new(i.as_fd(), nix::poll::PollFlags::POLLIN)];
    let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(250u16));
    while let Ok(evs) = i.read_events() {
        if evs.is_empty() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dray_logfile::{Rotation, Stream, Writer};

    #[test]
    fn follows_across_rotation_without_loss() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c-json.log");
        let rot = Rotation {
            max_size: 400,
            max_file: 3,
        };
        let mut w = Writer::open(&p, rot).unwrap();
        let entry = |i: i64| Entry {
            stream: Stream::Stdout,
            line: format!("n {i}\n").into_bytes(),
            time: i,
        };
        for i in 0..3 {
            w.write(&entry(i)).unwrap();
        }
        let (tx, mut rx) = mpsc::channel(1000);
        let stopped = Arc::new(AtomicBool::new(false));
        let s2 = stopped.clone();
        let p2 = p.clone();
        let t = std::thread::spawn(move || {
            follow(
                p2,
                3,
                Filter {
                    stdout: true,
                    stderr: true,
                    ..Filter::default()
                },
                true,
                s2,
                tx,
            )
        });
        for i in 3..30 {
            w.write(&entry(i)).unwrap();
            if i % 7 == 0 {
                std::thread::sleep(Duration::from_millis(30));
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        stopped.store(true, Ordering::SeqCst);
        t.join().unwrap();
        let mut got = Vec::new();
        while let Ok(e) = rx.try_recv() {
            got.push(e.time);
        }
        assert_eq!(got, (0..30).collect::<Vec<_>>());
    }
}
