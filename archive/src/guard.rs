//! A guard in front of the tar parser: it follows the archive's framing (512-byte headers,
//! data rounded up to blocks, PAX `size` overrides) and refuses, before the parser buffers
//! anything, what a hostile layer uses to exhaust memory or disk:
//! - GNU long-name/long-link and PAX header records larger than [`MAX_EXTENSION`] (the parser
//!   reads them whole into memory);
//! - GNU sparse entries (their holes would be written out as real zeros).
//!
//! It passes every byte through unchanged (the diff ID hash sees the same stream).

use std::io::{self, Read};

/// The largest long-name, long-link or PAX record accepted.
pub const MAX_EXTENSION: u64 = 1 << 20;

const BLOCK: u64 = 512;

enum State {
    /// Collecting a header block.
    Header { buf: Vec<u8> },
    /// Passing `left` bytes of entry data (and padding); PAX data is kept in `pax`.
    Data { left: u64, pax: Option<Vec<u8>> },
    /// After the end-of-archive blocks: everything passes.
    Done,
}

/// The guard reader.
pub struct TarGuard<R> {
    inner: R,
    state: State,
    zero_blocks: u32,
    /// A PAX `size` for the next entry.
    pending_size: Option<u64>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A tar numeric field: octal text, or GNU base-256 (first byte's top bit set).
fn numeric(field: &[u8]) -> io::Result<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for &b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(b as u64))
                .ok_or_else(|| invalid("tar size overflows".into()))?;
        }
        return Ok(v);
    }
    let text: Vec<u8> = field.iter().copied().filter(|b| *b != 0 && *b != b' ').collect();
    if text.is_empty() {
        return Ok(0);
    }
    let s = std::str::from_utf8(&text).map_err(|_| invalid("tar size is not a number".into()))?;
    u64::from_str_radix(s, 8).map_err(|_| invalid(format!("tar size {s:?} is not an octal number")))
}

/// The `size` record of PAX data, if any.
fn pax_size(data: &[u8]) -> Option<u64> {
    let mut rest = data;
    while !rest.is_empty() {
        let sp = rest.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        if len <= sp || len > rest.len() {
            return None;
        }
        let rec = &rest[sp + 1..len];
        if let Some(v) = rec.strip_prefix(b"size=") {
            let v = v.strip_suffix(b"\n").unwrap_or(v);
            return std::str::from_utf8(v).ok()?.parse().ok();
        }
        rest = &rest[len..];
    }
    None
}

impl<R: Read> TarGuard<R> {
    pub fn new(inner: R) -> TarGuard<R> {
        TarGuard {
            inner,
            state: State::Header {
                buf: Vec::with_capacity(BLOCK as usize),
            },
            zero_blocks: 0,
            pending_size: None,
        }
    }

    fn header_done(&mut self, h: &[u8]) -> io::Result<()> {
        if h.iter().all(|b| *b == 0) {
            self.zero_blocks += 1;
            self.state = if self.zero_blocks >= 2 {
                State::Done
            } else {
                State::Header { buf: Vec::new() }
            };
            return Ok(());
        }
        self.zero_blocks = 0;
        let typeflag = h[156];
        let mut size = numeric(&h[124..136])?;
        let round = |n: u64| {
            n.checked_add(BLOCK - 1)
                .map(|v| v & !(BLOCK - 1))
                .ok_or_else(|| invalid("tar size overflows".into()))
        };
        match typeflag {
            b'L' | b'K' | b'x' | b'g' => {
                if size > MAX_EXTENSION {
                    return Err(invalid(format!(
                        "a tar header record of {size} bytes (type {:?}); the limit is {MAX_EXTENSION}",
                        typeflag as char
                    )));
                }
                let pax = (typeflag == b'x').then(Vec::new);
                self.state = State::Data {
                    left: round(size)?,
                    pax,
                };
            }
            b'S' => {
                return Err(invalid(
                    "sparse files (GNU tar type S) are not supported in image layers".into(),
                ))
            }
            _ => {
                if let Some(s) = self.pending_size.take() {
                    size = s;
                }
                self.state = State::Data {
                    left: round(size)?,
                    pax: None,
                };
            }
        }
        Ok(())
    }

    /// Follows the framing over `data`, which has just passed through.
    fn follow(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match &mut self.state {
                State::Done => return Ok(()),
                State::Header { buf } => {
                    let take = (BLOCK as usize - buf.len()).min(data.len());
                    buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if buf.len() == BLOCK as usize {
                        let h = std::mem::take(buf);
                        self.header_done(&h)?;
                    }
                }
                State::Data { left, pax } => {
                    let take = (*left).min(data.len() as u64) as usize;
                    if let Some(p) = pax.as_mut() {
                        p.extend_from_slice(&data[..take]);
                    }
                    *left -= take as u64;
                    data = &data[take..];
                    if *left == 0 {
                        if let Some(p) = pax.take() {
                            self.pending_size = pax_size(&p);
                        }
                        self.state = State::Header {
                            buf: Vec::with_capacity(BLOCK as usize),
                        };
                    }
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.follow(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(u8, &str, usize)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (ty, name, size) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_path(name).unwrap();
            h.set_size(*size as u64);
            h.set_entry_type(tar::EntryType::new(*ty));
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend(std::iter::repeat_n(b'a', *size));
            out.extend(std::iter::repeat_n(0, (512 - size % 512) % 512));
        }
        out.extend([0u8; 1024]);
        out
    }

    fn drain(data: &[u8]) -> io::Result<u64> {
        // Small reads: the framing must survive any chunking.
        let mut g = TarGuard::new(data);
        let mut buf = [0u8; 7];
        let mut n = 0;
        loop {
            match g.read(&mut buf)? {
                0 => return Ok(n),
                k => n += k as u64,
            }
        }
    }

    #[test]
    fn passes_ordinary_archives_and_refuses_bombs() {
        let ok = tar_with(&[
            (b'0', "a", 10),
            (b'5', "d", 0),
            (b'L', "././@LongLink", 300),
            (b'0', "b", 1000),
        ]);
        assert_eq!(drain(&ok).unwrap(), ok.len() as u64);
        let big = tar_with(&[(b'L', "././@LongLink", (MAX_EXTENSION + 1) as usize)]);
        assert!(drain(&big).unwrap_err().to_string().contains("tar header record"));
        let sparse = tar_with(&[(b'S', "s", 0)]);
        assert!(drain(&sparse).unwrap_err().to_string().contains("sparse"));
        assert_eq!(pax_size(b"20 size=12345678901\n"), Some(12345678901));
        assert_eq!(numeric(b"00000001750\0").unwrap(), 1000);
        assert_eq!(numeric(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]).unwrap(), 0x1000);
    }
}
