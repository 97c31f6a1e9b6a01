//! The shim's command line, as containerd's runtime v2 calls it: Go `flag`-style single-dash
//! flags (`-namespace ns`, `-debug`, `-flag=value`) followed by an optional action (`start`,
//! `delete`); no action means "be the long-lived server".

use thiserror::Error;

#[derive(Debug, Error)]
#[error("{0}")]
pub struct ArgsError(pub String);

/// What containerd told the shim on its command line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Flags {
    pub namespace: String,
    pub address: String,
    pub publish_binary: String,
    pub id: String,
    pub bundle: String,
    pub socket: String,
    pub debug: bool,
    pub version: bool,
    pub info: bool,
    pub action: Option<String>,
}

impl Flags {
    /// Parses the arguments after the program name the way Go's `flag` package does: flags
    /// stop at the first non-flag argument or `--`.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Flags, ArgsError> {
        let mut f = Flags::default();
        let mut it = args.into_iter().peekable();
        while let Some(a) = it.next() {
            if a == "--" {
                f.action = it.next();
                break;
            }
            let Some(body) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
                f.action = Some(a);
                break;
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            };
            let boolean = |v: Option<String>| -> Result<bool, ArgsError> {
                match v.as_deref() {
                    None | Some("true") | Some("1") => Ok(true),
                    Some("false") | Some("0") => Ok(false),
                    Some(o) => Err(ArgsError(format!("invalid boolean value {o:?} for -{name}"))),
                }
            };
            match name.as_str() {
                "debug" => f.debug = boolean(inline)?,
                "v" => f.version = boolean(inline)?,
                "info" => f.info = boolean(inline)?,
                "namespace" | "address" | "publish-binary" | "id" | "bundle" | "socket" => {
                    let v = match inline {
                        Some(v) => v,
                        None => it
                            .next()
                            .ok_or_else(|| ArgsError(format!("flag needs an argument: -{name}")))?,
                    };
                    match name.as_str() {
                        "namespace" => f.namespace = v,
                        "address" => f.address = v,
                        "publish-binary" => f.publish_binary = v,
                        "id" => f.id = v,
                        "bundle" => f.bundle = v,
                        _ => f.socket = v,
                    }
                }
                _ => return Err(ArgsError(format!("flag provided but not defined: -{name}"))),
            }
        }
        Ok(f)
    }

    /// The server's own command line (no action): what `start` re-executes the binary with.
    pub fn server_args(&self) -> Vec<String> {
        let mut v = vec![
            "-namespace".to_string(),
            self.namespace.clone(),
            "-id".to_string(),
            self.id.clone(),
            "-address".to_string(),
            self.address.clone(),
        ];
        if !self.publish_binary.is_empty() {
            v.extend(["-publish-binary".to_string(), self.publish_binary.clone()]);
        }
        if self.debug {
            v.push("-debug".to_string());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<Flags, ArgsError> {
        Flags::parse(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn containerd_start_line() {
        let f = p(&[
            "-namespace",
            "default",
            "-address",
            "/run/containerd/containerd.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            "c1",
            "-debug",
            "start",
        ])
        .unwrap();
        assert_eq!(f.namespace, "default");
        assert_eq!(f.address, "/run/containerd/containerd.sock");
        assert_eq!(f.publish_binary, "/usr/bin/containerd");
        assert_eq!(f.id, "c1");
        assert!(f.debug);
        assert_eq!(f.action.as_deref(), Some("start"));
        let again = p(&f.server_args().iter().map(|s| s.as_str()).collect::<Vec<_>>()).unwrap();
        assert_eq!(again.action, None);
        assert_eq!(again.id, "c1");
        assert!(again.debug);
    }

    #[test]
    fn go_flag_forms() {
        let f = p(&["--id=x", "-bundle=/b", "-debug=false", "-v", "delete"]).unwrap();
        assert_eq!(
            (f.id.as_str(), f.bundle.as_str(), f.debug, f.version),
            ("x", "/b", false, true)
        );
        assert_eq!(f.action.as_deref(), Some("delete"));
        assert!(p(&["-bogus"]).is_err());
        assert!(p(&["-id"]).is_err());
        assert!(p(&["-debug=maybe"]).is_err());
    }
}
