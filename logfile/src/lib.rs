//! Container logs in docker's json-file format: one JSON object a line,
//! `{"log":"text\n","stream":"stdout","time":"2026-11-29T13:17:13.123456789Z"}`, rotated at
//! `max-size` into `NAME.1` … `NAME.(max-file - 1)`.
//!
//! A leaf crate: the dray shim writes a container's log itself (so that no line is lost
//! while drayd is down, and a container never waits for a reader), and drayd writes the logs
//! of containers whose shim cannot (any other shim: drayd drains their FIFOs), reads them and
//! follows them. Lines are cut as docker's copier cuts them: at each newline, at 16 KiB and
//! at the end of the stream.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The longest line kept as one entry (docker's 16 KiB buffer).
pub const MAX_LINE: usize = 16 * 1024;

/// The rotation drayd applies unless told otherwise (docker's own default is unrotated;
/// rotation is what its documentation recommends).
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's civil_from_days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 in UTC with nanoseconds, as docker writes `time`.
pub fn format_time(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// Parses the times this crate writes (and RFC 3339 with an offset); 0 when malformed.
pub fn parse_time(s: &str) -> i64 {
    fn num(s: &str) -> Option<i64> {
        s.parse().ok()
    }
    let parse = || -> Option<i64> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (y, mo, d) = (num(&s[0..4])?, num(&s[5..7])? as u32, num(&s[8..10])? as u32);
        let (h, mi, se) = (num(&s[11..13])?, num(&s[14..16])?, num(&s[17..19])?);
        let mut rest = &s[19..];
        let mut frac = 0i64;
        if let Some(r) = rest.strip_prefix('.') {
            let digits: String = r.chars().take_while(|c| c.is_ascii_digit()).collect();
            let mut padded = digits.clone();
            padded.truncate(9);
            while padded.len() < 9 {
                padded.push('0');
            }
            frac = num(&padded)?;
            rest = &r[digits.len()..];
        }
        let offset = match rest {
            "Z" | "z" => 0,
            o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
                let v = num(&o[1..3])? * 3600 + num(&o[4..6])? * 60;
                if o.starts_with('-') {
                    -v
                } else {
                    v
                }
            }
            _ => return None,
        };
        let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset;
        Some(secs * 1_000_000_000 + frac)
    };
    parse().unwrap_or(0)
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
    /// Parses docker's json-file options; an unknown option is an error, as in docker.
    pub fn from_opts<'a>(opts: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Rotation, String> {
        let mut r = Rotation::default();
        for (k, v) in opts {
            match k {
                "max-size" => {
                    r.max_size = if v == "-1" {
                        0
                    } else {
                        parse_size(v).ok_or_else(|| format!("invalid max-size {v:?}"))?
                    }
                }
                "max-file" => {
                    r.max_file = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| format!("invalid max-file {v:?}: a number of 1 or more"))?
                }
                "compress" | "labels" | "env" | "tag" => {}
                _ => return Err(format!("unknown log opt '{k}' for json-file log driver")),
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
        .map(|i| rotated(path, i))
        .filter(|p| p.exists())
        .collect();
    v.push(path.to_path_buf());
    v
}

/// `NAME.i`.
pub fn rotated(path: &Path, i: u32) -> PathBuf {
    PathBuf::from(format!("{}.{i}", path.display()))
}

/// The json-file writer of one container (not shared between processes: either the shim or
/// drayd writes a given log).
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    rotation: Rotation,
    file: File,
    size: u64,
}

impl Writer {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<Writer> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Writer {
            path: path.to_path_buf(),
            rotation,
            file,
            size,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry, rotating first when it would pass `max-size`.
    pub fn write(&mut self, e: &Entry) -> std::io::Result<()> {
        let data = encode(e);
        if self.rotation.max_size > 0 && self.size > 0 && self.size + data.len() as u64 > self.rotation.max_size {
            self.rotate()?;
        }
        self.file.write_all(&data)?;
        self.size += data.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.rotation.max_file <= 1 {
            self.file.set_len(0)?;
            self.file.seek(SeekFrom::Start(0))?;
            self.size = 0;
            return Ok(());
        }
        for i in (1..self.rotation.max_file - 1).rev() {
            let _ = std::fs::rename(rotated(&self.path, i), rotated(&self.path, i + 1));
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
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

/// Where a reader stopped in the current file: its inode and the offset after the last
/// complete line (a follower continues from there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub inode: u64,
    pub offset: u64,
}

/// Reads a log's entries (every rotated file, oldest first) that pass `filter`.
pub fn read(path: &Path, max_file: u32, filter: &Filter) -> std::io::Result<(Vec<Entry>, Position)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::VecDeque::new();
    let mut pos = Position::default();
    for f in files(path, max_file) {
        let file = match File::open(&f) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let inode = file.metadata()?.ino();
        let mut r = BufReader::new(file);
        let mut offset = 0u64;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = r.read_until(b'\n', &mut line)?;
            if n == 0 || !line.ends_with(b"\n") {
                break;
            }
            offset += n as u64;
            if let Some(e) = decode(&line[..line.len() - 1]).filter(|e| filter.wants(e)) {
                out.push_back(e);
                if let Some(t) = filter.tail {
                    while out.len() > t {
                        out.pop_front();
                    }
                }
            }
        }
        if f == path {
            pos = Position { inode, offset };
        }
    }
    Ok((out.into(), pos))
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

/// The current time in Unix nanoseconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
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
    fn times_round_trip() {
        for t in [
            0i64,
            1,
            951_782_400_000_000_001,
            1_795_958_886_070_125_506,
            4_102_444_800_999_999_999,
        ] {
            assert_eq!(parse_time(&format_time(t)), t, "{}", format_time(t));
        }
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(parse_time("2013-01-02T13:23:37Z"), 1_357_133_017_000_000_000);
        assert_eq!(parse_time("2013-01-02T14:23:37.5+01:00"), 1_357_133_017_500_000_000);
        assert_eq!(parse_time("garbage"), 0);
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
        let mut w = Writer::open(
            &p,
            Rotation {
                max_size: 300,
                max_file: 3,
            },
        )
        .unwrap();
        for i in 0..40 {
            w.write(&Entry {
                stream: Stream::Stdout,
                line: format!("line {i}\n").into_bytes(),
                time: i,
            })
            .unwrap();
        }
        assert!(d.path().join("c-json.log.2").exists());
        assert!(!d.path().join("c-json.log.3").exists());
        let (got, pos) = read(&p, 3, &all()).unwrap();
        let nums: Vec<i64> = got.iter().map(|e| e.time).collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        assert_eq!(*nums.last().unwrap(), 39);
        assert_eq!(pos.offset, std::fs::metadata(&p).unwrap().len());
        let (tail, _) = read(&p, 3, &Filter { tail: Some(2), ..all() }).unwrap();
        assert_eq!(tail.iter().map(|e| e.time).collect::<Vec<_>>(), vec![38, 39]);
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
