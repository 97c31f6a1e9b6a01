//! Our own tar writer (POSIX ustar, with PAX records for what ustar cannot hold): used for
//! `save`, and later `export`, `commit` and `build`. It writes only what it is given, with
//! names it is given: no reading of the host file system happens here.

use std::io::{self, Read, Write};

const BLOCK: usize = 512;

/// A tar stream being written to `W`.
pub struct TarWriter<W: Write> {
    out: W,
}

/// One entry's header fields.
#[derive(Debug, Clone)]
pub struct Header {
    pub name: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub kind: Kind,
    pub link: String,
    /// Device numbers (Char, Block).
    pub devmajor: u32,
    pub devminor: u32,
    /// Extended attributes (PAX `SCHILY.xattr.NAME`).
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Entry types the writer emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A hard link to the earlier entry named `link`.
    Hardlink,
    Char,
    Block,
    Fifo,
}

impl Header {
    /// A regular file of `size` bytes, 0644, root, at the epoch.
    pub fn file(name: &str, size: u64) -> Header {
        Header {
            name: name.into(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            size,
            mtime: 0,
            kind: Kind::File,
            link: String::new(),
            devmajor: 0,
            devminor: 0,
            xattrs: Vec::new(),
        }
    }

    /// A directory, 0755.
    pub fn dir(name: &str) -> Header {
        let mut n = name.trim_end_matches('/').to_string();
        n.push('/');
        Header {
            name: n,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            kind: Kind::Dir,
            link: String::new(),
            devmajor: 0,
            devminor: 0,
            xattrs: Vec::new(),
        }
    }
}

fn octal(field: &mut [u8], v: u64) -> bool {
    let s = format!("{:0width$o}", v, width = field.len() - 1);
    if s.len() > field.len() - 1 {
        return false;
    }
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[s.len()] = 0;
    true
}

fn pax_record(key: &str, value: &str) -> Vec<u8> {
    pax_record_bytes(key, value.as_bytes())
}

/// "LEN key=value\n" where LEN counts itself; the value may hold any bytes.
fn pax_record_bytes(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = 1 + key.len() + 1 + value.len() + 1;
    let mut len = body_len + 1;
    loop {
        let l = len.to_string().len() + body_len;
        if l == len {
            break;
        }
        len = l;
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> TarWriter<W> {
        TarWriter { out }
    }

    fn raw_header(&mut self, h: &Header, name: &str, link: &str, typeflag: u8, size: u64) -> io::Result<()> {
        let mut b = [0u8; BLOCK];
        let nb = name.as_bytes();
        b[..nb.len().min(100)].copy_from_slice(&nb[..nb.len().min(100)]);
        octal(&mut b[100..108], h.mode as u64);
        octal(&mut b[108..116], h.uid.min(0o7777777));
        octal(&mut b[116..124], h.gid.min(0o7777777));
        octal(&mut b[124..136], size.min(0o77777777777));
        octal(&mut b[136..148], h.mtime.clamp(0, 0o77777777777) as u64);
        b[156] = typeflag;
        let lb = link.as_bytes();
        b[157..157 + lb.len().min(100)].copy_from_slice(&lb[..lb.len().min(100)]);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        if matches!(h.kind, Kind::Char | Kind::Block) {
            octal(&mut b[329..337], u64::from(h.devmajor));
            octal(&mut b[337..345], u64::from(h.devminor));
        }
        b[148..156].copy_from_slice(b"        ");
        let sum: u64 = b.iter().map(|&c| c as u64).sum();
        octal(&mut b[148..155], sum);
        b[155] = b' ';
        self.out.write_all(&b)
    }

    /// Writes a header, preceded by a PAX header when a field does not fit ustar.
    pub fn header(&mut self, h: &Header) -> io::Result<()> {
        if h.name.as_bytes().contains(&0) || h.link.as_bytes().contains(&0) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "tar name with a NUL byte"));
        }
        let mut pax = Vec::new();
        if h.name.len() > 100 {
            pax.extend(pax_record("path", &h.name));
        }
        if h.link.len() > 100 {
            pax.extend(pax_record("linkpath", &h.link));
        }
        if h.size > 0o77777777777 {
            pax.extend(pax_record("size", &h.size.to_string()));
        }
        if h.uid > 0o7777777 {
            pax.extend(pax_record("uid", &h.uid.to_string()));
        }
        if h.gid > 0o7777777 {
            pax.extend(pax_record("gid", &h.gid.to_string()));
        }
        for (k, v) in &h.xattrs {
            pax.extend(pax_record_bytes(&format!("SCHILY.xattr.{k}"), v));
        }
        if !pax.is_empty() {
            let ph = Header::file("PaxHeader", pax.len() as u64);
            self.raw_header(&ph, "PaxHeader", "", b'x', pax.len() as u64)?;
            self.out.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        let typeflag = match h.kind {
            Kind::File => b'0',
            Kind::Hardlink => b'1',
            Kind::Symlink => b'2',
            Kind::Char => b'3',
            Kind::Block => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
        };
        let size = if h.kind == Kind::File { h.size } else { 0 };
        self.raw_header(h, &h.name, &h.link, typeflag, size)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// A file whose content is `data`.
    pub fn file(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.header(&Header::file(name, data.len() as u64))?;
        self.out.write_all(data)?;
        self.pad(data.len() as u64)
    }

    /// A file of exactly `size` bytes read from `r` (an error if `r` has fewer).
    pub fn file_from(&mut self, name: &str, size: u64, r: impl Read) -> io::Result<()> {
        self.header(&Header::file(name, size))?;
        let n = io::copy(&mut r.take(size), &mut self.out)?;
        if n != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name}: {n} of {size} bytes"),
            ));
        }
        self.pad(size)
    }

    /// An entry with its content (`size` bytes from `r` for a regular file; nothing else).
    pub fn entry(&mut self, h: &Header, r: impl Read) -> io::Result<()> {
        self.header(h)?;
        if h.kind != Kind::File {
            return Ok(());
        }
        let n = io::copy(&mut r.take(h.size), &mut self.out)?;
        if n != h.size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: {n} of {} bytes (the file shrank while it was read)",
                    h.name, h.size
                ),
            ));
        }
        self.pad(h.size)
    }

    /// A directory entry.
    pub fn dir(&mut self, name: &str) -> io::Result<()> {
        self.header(&Header::dir(name))
    }

    /// Ends the archive (two zero blocks) and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; BLOCK * 2])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tar_crate_reads_what_we_write() {
        let mut w = TarWriter::new(Vec::new());
        w.dir("blobs").unwrap();
        w.file("blobs/a", b"hello").unwrap();
        let long = "d/".repeat(80) + "file";
        w.file(&long, b"long name").unwrap();
        w.file_from("b", 3, &b"xyz"[..]).unwrap();
        assert!(w.file_from("c", 4, &b"xy"[..]).is_err());
        let data = TarWriter::new(Vec::new());
        drop(data);
        let mut w2 = TarWriter::new(Vec::new());
        w2.file("blobs/a", b"hello").unwrap();
        w2.file(&long, b"long name").unwrap();
        let bytes = w2.finish().unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        let mut names = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            names.push((e.path().unwrap().display().to_string(), s));
        }
        assert_eq!(
            names,
            vec![
                ("blobs/a".to_string(), "hello".to_string()),
                (long, "long name".to_string())
            ]
        );
        assert_eq!(pax_record("path", "x"), b"9 path=x\n");
        // A record whose length field grows a digit: " k=" + 94 bytes + "\n" is 98, plus "101".
        assert_eq!(pax_record("k", &"v".repeat(94)).len(), 101);
    }
}
