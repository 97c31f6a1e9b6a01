//! The local terminal during `run -it`, `start -ai`, `attach` and `exec -it`: raw mode
//! (restored on every exit path, by drop), the window size sent at start and on every
//! SIGWINCH, and docker's detach keys (default ctrl-p ctrl-q) scanned in stdin.

use std::io::IsTerminal;

use anyhow::{bail, Result};
use tokio::sync::{mpsc, oneshot};

/// Terminal raw mode, restored on drop.
pub struct RawMode {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawMode {
    /// Raw mode when stdin is a terminal; nothing otherwise.
    pub fn enable() -> Option<RawMode> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = nix::sys::termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &raw);
        Some(RawMode { saved: Some(saved) })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, t);
        }
    }
}

/// The size (columns, rows) of the terminal on stdout.
pub fn size() -> Option<(u32, u32)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass; when fd 1 is not a
    // terminal the call fails and nothing is written.
    let r = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some((u32::from(ws.ws_col), u32::from(ws.ws_row)))
}

/// docker's `--detach-keys`: comma-separated `ctrl-<char>` or single characters
/// (`ctrl-p,ctrl-q`, `ctrl-a,d`).
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for k in s.split(',') {
        let k = k.trim();
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [b] if b.is_ascii_alphabetic() => b.to_ascii_lowercase() - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => bail!("invalid detach keys {s:?}: unknown character {k:?}"),
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            bail!("invalid detach keys {s:?}: {k:?} is not a key");
        }
    }
    if out.is_empty() {
        bail!("invalid detach keys {s:?}");
    }
    Ok(out)
}

/// Finds the detach sequence in stdin, holding back a partial match until it is decided.
#[derive(Debug)]
pub struct DetachScanner {
    keys: Vec<u8>,
    held: usize,
}

impl DetachScanner {
    pub fn new(keys: Vec<u8>) -> DetachScanner {
        DetachScanner { keys, held: 0 }
    }

    /// Returns the bytes to forward, and whether the sequence completed.
    pub fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(data.len());
        for &b in data {
            if b == self.keys[self.held] {
                self.held += 1;
                if self.held == self.keys.len() {
                    return (out, true);
                }
            } else {
                out.extend_from_slice(&self.keys[..self.held]);
                self.held = 0;
                if b == self.keys[0] {
                    self.held = 1;
                } else {
                    out.push(b);
                }
            }
        }
        (out, false)
    }
}

/// Relays stdin as messages (`data`, then `close` at its end); sends on `detached` when the
/// detach keys are typed (the container's stdin then stays open).
pub fn spawn_stdin<M: Send + 'static>(
    tx: mpsc::Sender<M>,
    data: fn(Vec<u8>) -> M,
    close: fn() -> M,
    keys: Option<Vec<u8>>,
    detached: oneshot::Sender<()>,
) {
    use tokio::io::AsyncReadExt;
    tokio::spawn(async move {
        let mut input = tokio::io::stdin();
        let mut buf = vec![0u8; 8192];
        let mut scan = keys.map(DetachScanner::new);
        loop {
            let n = match input.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = tx.send(close()).await;
                    return;
                }
                Ok(n) => n,
            };
            let (fwd, detach) = match scan.as_mut() {
                Some(s) => s.feed(&buf[..n]),
                None => (buf[..n].to_vec(), false),
            };
            if !fwd.is_empty() && tx.send(data(fwd)).await.is_err() {
                return;
            }
            if detach {
                let _ = detached.send(());
                return;
            }
        }
    });
}

/// Sends the terminal's size now and after every SIGWINCH.
pub fn spawn_resizer<M: Send + 'static>(tx: mpsc::Sender<M>, size_msg: fn(u32, u32) -> M) {
    tokio::spawn(async move {
        let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
        loop {
            if let Some((w, h)) = size() {
                if tx.send(size_msg(w, h)).await.is_err() {
                    return;
                }
            }
            match winch.as_mut() {
                Some(s) => {
                    if s.recv().await.is_none() {
                        return;
                    }
                }
                None => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_as_docker() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("ctrl-a,d").unwrap(), vec![1, b'd']);
        assert_eq!(parse_detach_keys("ctrl-[").unwrap(), vec![27]);
        assert!(parse_detach_keys("ctrl-").is_err());
        assert!(parse_detach_keys("alt-x").is_err());
    }

    #[test]
    fn scanner_holds_partial_matches() {
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(s.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(s.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(s.feed(b"\x11zz"), (vec![], true));
    }
}
