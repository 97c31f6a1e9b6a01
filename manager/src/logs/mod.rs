//! Container logs in docker's json-file format: one JSON object a line,
//! `{"log":"text\n","stream":"stdout","time":"2026-11-29T13:17:13.123456789Z"}`, rotated at
//! `max-size` into `NAME.1` … `NAME.(max-file - 1)` (docker's defaults here: 10 MiB × 3).
//!
//! The writer splits output into lines as docker's copier does: a line is cut at 16 KiB and
//! at the end of the stream. Readers read the rotated files oldest first; a follower gets
//! what the writer appends after its read, with nothing lost or doubled (it subscribes under
//! the writer's lock).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::error::{Error, IoContext, Result};

/// The longest line kept as one entry (docker's 16 KiB buffer).
pub const MAX_LINE: usize = 16 * 1024;

/// docker's json-file defaults as drayd applies them (docker's own default is unrotated;
/// rotation by default is what its documentation recommends).
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
pub const DEFAULT_MAX_FILE: u32 = 3;

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub stream: Stream,
    pub line: Vec<u8>,
    /// Unix nanoseconds.
    pub time: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct JsonLine<'a> {
    log: std::borrow::Cow<'a, str>,
    stream: std::borrow::Cow<'a, str>,
    time: std::borrow::Cow<'a, str>,
}

/// RFC 3339 with nanoseconds, as docker writes `time`.
pub fn format_time(nanos: i64) -> String {
    chrono::DateTime::from_timestamp(nanos.div_euclid(1_000_000_000), nanos.rem_euclid(1_000_000_000) as u32)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}

fn parse_time(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or(0)
}

/// Encodes one entry as a json-file line (with its newline).
pub fn encode(e: &Entry) -> Vec<u8> {
    let line = JsonLine {
        log: String::from_utf8_lossy(&e.line),
        stream: e.stream.as_str().into(),
        time: format_time(e.time).into(),
    };
    let mut out = serde_json::to_vec(&line).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Decodes one json-file line; `None` for a line that is not one (a torn last line).
pub fn decode(line: &[u8]) -> Option<Entry> {
    let j: JsonLine<'_> = serde_json::from_slice(line).ok()?;
    Some(Entry {
        stream: if j.stream == "stderr" {
            Stream::Stderr
        } else {
            Stream::Stdout
        },
        line: j.log.as_bytes().to_vec(),
        time: parse_time(&j.time),
    })
}

/// Rotation settings (`--log-opt max-size=10m --log-opt max-file=3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// 0: never rotate.
    pub max_size: u64,
    pub max_file: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_size: DEFAULT_MAX_SIZE,
            max_file: DEFAULT_MAX_FILE,
        }
    }
}

impl Rotation {
    /// Parses docker's json-file options; unknown options are an error, as in docker.
    pub fn from_opts<'a>(opts: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Rotation> {
        let mut r = Rotation::default();
        for (k, v) in opts {
            match k {
                "max-size" => {
                    r.max_size = if v == "-1" {
                        0
                    } else {
                        parse_size(v).ok_or_else(|| Error::InvalidArgument(format!("invalid max-size {v:?}")))?
                    }
                }
                "max-file" => {
                    r.max_file = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        Error::InvalidArgument(format!("invalid max-file {v:?}: a number of 1 or more"))
                    })?
                }
                "compress" | "labels" | "env" | "tag" => {}
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "unknown log opt '{k}' for json-file log driver"
                    )))
                }
            }
        }
        Ok(r)
    }
}

/// docker's sizes: `10m`, `512k`, `1g`, `100` (bytes), case-insensitive, optional `b`.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mul) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n >= 0.0).then_some((n * mul as f64) as u64)
}

/// The files of a log, oldest first.
pub fn files(path: &Path, max_file: u32) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = (1..max_file.max(1))
        .rev()
        .map(|i| PathBuf::from(format!("{}.{i}", path.display())))
        .filter(|p| p.exists())
        .collect();
    v.push(path.to_path_buf());
    v
}

struct WriterState {
    file: File,
    size: u64,
    tx: broadcast::Sender<Entry>,
}

/// The json-file writer of one container; cheap to clone.
#[derive(Clone)]
pub struct LogWriter {
    path: PathBuf,
    rotation: Rotation,
    state: Arc<Mutex<WriterState>>,
}

impl LogWriter {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &Path, rotation: Rotation) -> Result<LogWriter> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ctx(|| format!("opening {}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let (tx, _) = broadcast::channel(4096);
        Ok(LogWriter {
            path: path.to_path_buf(),
            rotation,
            state: Arc::new(Mutex::new(WriterState { file, size, tx })),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WriterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one entry, rotating first when it would pass `max-size`.
    pub fn write(&self, e: Entry) -> Result<()> {
        let data = encode(&e);
        let mut st = self.lock();
        if self.rotation.max_size > 0 && st.size > 0 && st.size + data.len() as u64 > self.rotation.max_size {
            self.rotate(&mut st)?;
        }
        st.file
            .write_all(&data)
            .ctx(|| format!("writing {}", self.path.display()))?;
        st.size += data.len() as u64;
        let _ = st.tx.send(e);
        Ok(())
    }

    fn rotate(&self, st: &mut WriterState) -> Result<()> {
        let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        if self.rotation.max_file <= 1 {
            st.file
                .set_len(0)
                .ctx(|| format!("truncating {}", self.path.display()))?;
            st.file.seek(SeekFrom::Start(0)).ctx(|| "seek".to_string())?;
            st.size = 0;
            return Ok(());
        }
        for i in (1..self.rotation.max_file - 1).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        std::fs::rename(&self.path, name(1)).ctx(|| format!("rotating {}", self.path.display()))?;
        st.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .ctx(|| format!("opening {}", self.path.display()))?;
        st.size = 0;
        Ok(())
    }

    /// Reads what is logged (per `filter`) and subscribes to what comes next, atomically
    /// with respect to writes.
    pub fn read_and_follow(&self, filter: &Filter) -> Result<(Vec<Entry>, broadcast::Receiver<Entry>)> {
        let st = self.lock();
        let rx = st.tx.subscribe();
        let entries = read(&self.path, self.rotation.max_file, filter)?;
        Ok((entries, rx))
    }
}

/// Which entries a reader wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Lines from the end; `None`: all.
    pub tail: Option<usize>,
    /// Unix nanoseconds; 0: unbounded.
    pub since: i64,
    pub until: i64,
    pub stdout: bool,
    pub stderr: bool,
}

impl Filter {
    pub fn wants(&self, e: &Entry) -> bool {
        let stream = match e.stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        };
        stream && (self.since == 0 || e.time >= self.since) && (self.until == 0 || e.time <= self.until)
    }
}

/// Reads a log's entries (every rotated file, oldest first) that pass `filter`.
pub fn read(path: &Path, max_file: u32, filter: &Filter) -> Result<Vec<Entry>> {
    let mut out = std::collections::VecDeque::new();
    for f in files(path, max_file) {
        let file = match File::open(&f) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("opening {}", f.display()), e)),
        };
        for line in BufReader::new(file).split(b'\n') {
            let line = line.ctx(|| format!("reading {}", f.display()))?;
            if let Some(e) = decode(&line).filter(|e| filter.wants(e)) {
                out.push_back(e);
                if let Some(t) = filter.tail {
                    while out.len() > t {
                        out.pop_front();
                    }
                }
            }
        }
    }
    Ok(out.into())
}

/// Cuts a stream into log lines: at each newline, at [`MAX_LINE`], and at the end.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Feeds output; returns the complete lines (each with its newline, or cut at MAX_LINE).
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for chunk in data.split_inclusive(|b| *b == b'\n') {
            self.buf.extend_from_slice(chunk);
            while self.buf.len() >= MAX_LINE && !(self.buf.len() == MAX_LINE && self.buf.ends_with(b"\n")) {
                let rest = self.buf.split_off(MAX_LINE);
                out.push(std::mem::replace(&mut self.buf, rest));
            }
            if self.buf.ends_with(b"\n") {
                out.push(std::mem::take(&mut self.buf));
            }
        }
        out
    }

    /// The partial line left at the end of the stream.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Filter {
        Filter {
            stdout: true,
            stderr: true,
            ..Filter::default()
        }
    }

    #[test]
    fn json_line_as_docker_writes_it() {
        let e = Entry {
            stream: Stream::Stderr,
            line: b"h\xc3\xa9 \"x\"\n".to_vec(),
            time: 1_700_000_000_123_456_789,
        };
        let s = String::from_utf8(encode(&e)).unwrap();
        assert_eq!(
            s,
            "{\"log\":\"h\u{e9} \\\"x\\\"\\n\",\"stream\":\"stderr\",\"time\":\"2023-11-14T22:13:20.123456789Z\"}\n"
        );
        assert_eq!(decode(s.trim_end().as_bytes()).unwrap(), e);
    }

    #[test]
    fn lines_are_split_as_docker_does() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"ab").is_empty());
        assert_eq!(s.push(b"c\nd\ne"), vec![b"abc\n".to_vec(), b"d\n".to_vec()]);
        assert_eq!(s.finish(), Some(b"e".to_vec()));
        let long = vec![b'x'; MAX_LINE * 2 + 3];
        let lines = s.push(&long);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == MAX_LINE));
        assert_eq!(s.finish().map(|l| l.len()), Some(3));
    }

    #[test]
    fn rotation_keeps_max_file_files_and_reads_in_order() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c-json.log");
        let w = LogWriter::open(
            &p,
            Rotation {
                max_size: 300,
                max_file: 3,
            },
        )
        .unwrap();
        for i in 0..40 {
            w.write(Entry {
                stream: Stream::Stdout,
                line: format!("line {i}\n").into_bytes(),
                time: i,
            })
            .unwrap();
        }
        assert!(d.path().join("c-json.log.2").exists());
        assert!(!d.path().join("c-json.log.3").exists());
        let got = read(&p, 3, &all()).unwrap();
        let nums: Vec<i64> = got.iter().map(|e| e.time).collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        assert_eq!(*nums.last().unwrap(), 39);
        let tail = read(&p, 3, &Filter { tail: Some(2), ..all() }).unwrap();
        assert_eq!(tail.iter().map(|e| e.time).collect::<Vec<_>>(), vec![38, 39]);
    }

    #[test]
    fn follow_misses_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        let w = LogWriter::open(&p, Rotation::default()).unwrap();
        let e = |i| Entry {
            stream: Stream::Stdout,
            line: b"x\n".to_vec(),
            time: i,
        };
        w.write(e(1)).unwrap();
        let (old, mut rx) = w.read_and_follow(&all()).unwrap();
        w.write(e(2)).unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(rx.try_recv().unwrap().time, 2);
    }

    #[test]
    fn sizes_and_opts() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("x"), None);
        assert!(Rotation::from_opts([("max-file", "0")]).is_err());
        assert!(Rotation::from_opts([("mode", "non-blocking")]).is_err());
        assert_eq!(
            Rotation::from_opts([("max-size", "1k"), ("max-file", "5")]).unwrap(),
            Rotation {
                max_size: 1024,
                max_file: 5
            }
        );
    }
}
