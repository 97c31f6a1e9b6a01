//! login, logout: credentials in docker's config.json, checked against the registry by drayd.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result};
use clap::Args;
use dray_proto::v1 as pb;

use crate::client::Client;
use crate::credentials::{self, Auth};
use crate::DaemonError;

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry server (default: Docker Hub)
    pub server: Option<String>,
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password
    #[arg(short, long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
}

fn host_of(server: &Option<String>) -> String {
    match server.as_deref() {
        None | Some("") => "docker.io".into(),
        Some(s) => {
            let h = s.trim_start_matches("https://").trim_start_matches("http://");
            let h = h.split('/').next().unwrap_or(h);
            if h == "index.docker.io" || h == "registry-1.docker.io" {
                "docker.io".into()
            } else {
                h.to_string()
            }
        }
    }
}

pub async fn login(c: &Client, a: LoginArgs) -> Result<u8> {
    let host = host_of(&a.server);
    if a.password.is_some() && a.password_stdin {
        anyhow::bail!("--password and --password-stdin are mutually exclusive");
    }
    if a.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let username = match a.username {
        Some(u) => u,
        None => {
            if !std::io::stdin().is_terminal() {
                anyhow::bail!(
                    "Cannot perform an interactive login from a non TTY device: give -u and --password-stdin"
                );
            }
            eprint!("Username: ");
            std::io::stderr().flush()?;
            let mut u = String::new();
            std::io::stdin().lock().read_line(&mut u)?;
            u.trim().to_string()
        }
    };
    let password = match a.password {
        Some(p) => p,
        None if a.password_stdin => {
            let mut p = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut p)
                .context("reading the password from stdin")?;
            p.trim_end_matches(['\n', '\r']).to_string()
        }
        None => anyhow::bail!("a password is needed: use --password-stdin"),
    };
    if username.is_empty() || password.is_empty() {
        anyhow::bail!("Error: Username and password are required");
    }
    let req = pb::LoginRequest {
        server: host.clone(),
        auth: Some(pb::RegistryAuth {
            username: username.clone(),
            password: password.clone(),
            identity_token: String::new(),
        }),
    };
    let resp = c.images().login(req).await.map_err(DaemonError::from)?.into_inner();
    let path = credentials::store(
        &host,
        &Auth {
            username,
            password,
            identity_token: resp.identity_token,
        },
    )?;
    eprintln!(
        "WARNING! Your password will be stored unencrypted in {}.",
        path.display()
    );
    println!("{}", resp.status);
    Ok(0)
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry server (default: Docker Hub)
    pub server: Option<String>,
}

pub fn logout(a: &LogoutArgs) -> Result<u8> {
    let host = host_of(&a.server);
    let key = credentials::key_of(&host);
    if credentials::erase(&host)? {
        println!("Removing login credentials for {key}");
    } else {
        println!("Not logged in to {key}");
    }
    Ok(0)
}
