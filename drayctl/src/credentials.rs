//! Registry credentials in docker's `config.json` (`$DOCKER_CONFIG/config.json`, default
//! `~/.docker/config.json`): `auths` entries (base64 `auth`, or `username`/`password`,
//! `identitytoken`), and credential helpers (`credsStore`, `credHelpers`:
//! `docker-credential-NAME get|store|erase`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use base64::Engine as _;
use serde_json::{Map, Value};

/// The key docker uses for Docker Hub.
pub const HUB_KEY: &str = "https://index.docker.io/v1/";

/// Credentials for one registry.
#[derive(Debug, Default, Clone)]
pub struct Auth {
    pub username: String,
    pub password: String,
    pub identity_token: String,
}

fn config_path() -> PathBuf {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".docker"));
    dir.join("config.json")
}

fn load() -> Result<Map<String, Value>> {
    let p = config_path();
    match std::fs::read(&p) {
        Ok(b) if b.iter().all(|c| c.is_ascii_whitespace()) => Ok(Map::new()),
        Ok(b) => match serde_json::from_slice::<Value>(&b).with_context(|| format!("parsing {}", p.display()))? {
            Value::Object(m) => Ok(m),
            _ => anyhow::bail!("{} is not a JSON object", p.display()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

fn save(m: &Map<String, Value>) -> Result<()> {
    let p = config_path();
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let tmp = p.with_extension("json.tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(serde_json::to_string_pretty(&Value::Object(m.clone()))?.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &p).with_context(|| format!("writing {}", p.display()))
}

/// The config key of a registry host ("docker.io" → docker's Hub URL).
pub fn key_of(registry: &str) -> String {
    if registry == "docker.io" {
        HUB_KEY.into()
    } else {
        registry.into()
    }
}

fn helper_of(m: &Map<String, Value>, key: &str) -> Option<String> {
    m.get("credHelpers")
        .and_then(|h| h.get(key))
        .and_then(Value::as_str)
        .or_else(|| m.get("credsStore").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn run_helper(helper: &str, action: &str, input: &str) -> Result<String> {
    let bin = format!("docker-credential-{helper}");
    let mut child = Command::new(&bin)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running the credential helper {bin}"))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).trim().to_string() + String::from_utf8_lossy(&out.stderr).trim();
        anyhow::bail!("{bin} {action}: {msg}");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The stored credentials for a registry host, if any.
pub fn get(registry: &str) -> Result<Option<Auth>> {
    let m = load()?;
    let key = key_of(registry);
    if let Some(helper) = helper_of(&m, &key) {
        let out = match run_helper(&helper, "get", &key) {
            Ok(o) => o,
            Err(e) if e.to_string().contains("credentials not found") => return Ok(None),
            Err(e) => return Err(e),
        };
        let v: Value = serde_json::from_str(&out).context("parsing the credential helper's answer")?;
        let user = v.get("Username").and_then(Value::as_str).unwrap_or("").to_string();
        let secret = v.get("Secret").and_then(Value::as_str).unwrap_or("").to_string();
        return Ok(Some(if user == "<token>" {
            Auth {
                identity_token: secret,
                ..Auth::default()
            }
        } else {
            Auth {
                username: user,
                password: secret,
                ..Auth::default()
            }
        }));
    }
    let auths = m.get("auths").and_then(Value::as_object);
    let entry = auths.and_then(|a| {
        a.get(&key)
            .or_else(|| a.get(&format!("https://{key}")))
            .or_else(|| a.get(&format!("http://{key}")))
            .or_else(|| {
                if registry == "docker.io" {
                    a.get("docker.io")
                } else {
                    None
                }
            })
    });
    let Some(e) = entry else { return Ok(None) };
    let mut auth = Auth {
        username: e.get("username").and_then(Value::as_str).unwrap_or("").into(),
        password: e.get("password").and_then(Value::as_str).unwrap_or("").into(),
        identity_token: e.get("identitytoken").and_then(Value::as_str).unwrap_or("").into(),
    };
    if let Some(b) = e.get("auth").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b)
            .context("decoding an auth entry of config.json")?;
        let s = String::from_utf8_lossy(&raw).into_owned();
        let (u, p) = s
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("config.json auth entry for {key} is not user:password"))?;
        auth.username = u.into();
        auth.password = p.into();
    }
    Ok(Some(auth))
}

/// Stores credentials (through the helper when one is configured).
pub fn store(registry: &str, auth: &Auth) -> Result<PathBuf> {
    let mut m = load()?;
    let key = key_of(registry);
    if let Some(helper) = helper_of(&m, &key) {
        let input =
            serde_json::json!({"ServerURL": key, "Username": auth.username, "Secret": auth.password}).to_string();
        run_helper(&helper, "store", &input)?;
        let auths = m.entry("auths").or_insert_with(|| Value::Object(Map::new()));
        if let Some(a) = auths.as_object_mut() {
            a.insert(key, Value::Object(Map::new()));
        }
    } else {
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", auth.username, auth.password));
        let auths = m.entry("auths").or_insert_with(|| Value::Object(Map::new()));
        let a = auths
            .as_object_mut()
            .ok_or_else(|| anyhow::anyhow!("config.json: auths is not an object"))?;
        a.insert(key, serde_json::json!({ "auth": enc }));
    }
    save(&m)?;
    Ok(config_path())
}

/// Removes credentials; false when there were none.
pub fn erase(registry: &str) -> Result<bool> {
    let mut m = load()?;
    let key = key_of(registry);
    if let Some(helper) = helper_of(&m, &key) {
        let _ = run_helper(&helper, "erase", &key);
    }
    let removed = m
        .get_mut("auths")
        .and_then(Value::as_object_mut)
        .and_then(|a| a.remove(&key))
        .is_some();
    if removed {
        save(&m)?;
    }
    Ok(removed)
}
