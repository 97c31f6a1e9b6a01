//! The OCI distribution client: manifests and blobs over HTTP(S), with authentication,
//! mirrors, retries, redirects (followed by reqwest, which drops credentials on a change of
//! host) and Range requests that resume a blob where an earlier attempt stopped.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RANGE, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use super::auth::{parse_challenge, Challenge, Credentials, TokenResponse};
use super::reference::{Reference, DOCKER_HUB};
use crate::config::RegistryHost;
use crate::content::MAX_METADATA_BLOB;
use crate::digest::Digest;
use crate::error::{Error, Result};

/// Attempts per request on connection errors, 5xx and 429, with doubling backoff.
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Bearer tokens by (endpoint, scope, credentials fingerprint), with their expiry: a token
/// one client's credentials earned is never handed to another client's request.
type Tokens = Arc<Mutex<HashMap<(String, String, String), (String, Instant)>>>;

/// Registry clients, one per host configuration, and the bearer tokens they were given.
pub struct Registries {
    hosts: BTreeMap<String, RegistryHost>,
    clients: Mutex<HashMap<String, reqwest::Client>>,
    tokens: Tokens,
    user_agent: String,
}

/// Where requests for one registry go.
#[derive(Debug, Clone)]
struct Endpoint {
    /// `http[s]://host[:port]`.
    base: String,
    /// A mirror answers pulls only.
    mirror: bool,
}

/// True for hosts that are always spoken to over plain HTTP (docker treats loopback registries
/// as insecure).
pub fn is_loopback_host(host: &str) -> bool {
    let h = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

impl Registries {
    /// Clients for the configured hosts.
    pub fn new(hosts: BTreeMap<String, RegistryHost>) -> Registries {
        Registries {
            hosts,
            clients: Mutex::new(HashMap::new()),
            tokens: Arc::new(Mutex::new(HashMap::new())),
            user_agent: format!("drayd/{}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Hosts configured as insecure (for `info`).
    pub fn insecure_hosts(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|(_, h)| h.insecure)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Mirrors per host (for `info`).
    pub fn mirrors(&self) -> BTreeMap<String, String> {
        self.hosts
            .iter()
            .filter(|(_, h)| !h.mirrors.is_empty())
            .map(|(k, h)| (k.clone(), h.mirrors.join(",")))
            .collect()
    }

    fn client(&self, registry: &str) -> Result<reqwest::Client> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(registry) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .user_agent(self.user_agent.clone())
            .connect_timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::limited(10));
        if let Some(ca) = self.hosts.get(registry).and_then(|h| h.ca_file.as_ref()) {
            let pem = std::fs::read(ca)
                .map_err(|e| Error::io(format!("reading CA file {} of {registry}", ca.display()), e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::InvalidArgument(format!("CA file {} of {registry}: {e}", ca.display())))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let c = b
            .build()
            .map_err(|e| Error::Remote(format!("building the HTTP client for {registry}: {e}")))?;
        clients.insert(registry.to_string(), c.clone());
        Ok(c)
    }

    fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let cfg = self.hosts.get(registry);
        let mut out: Vec<Endpoint> = cfg
            .map(|h| {
                h.mirrors
                    .iter()
                    .map(|m| Endpoint {
                        base: m.trim_end_matches('/').to_string(),
                        mirror: true,
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Loopback registries speak plain HTTP (as docker treats them), unless a CA file is
        // configured for the host: then it is TLS with that CA.
        let insecure =
            cfg.is_some_and(|h| h.insecure) || (is_loopback_host(registry) && cfg.is_none_or(|h| h.ca_file.is_none()));
        let host = if registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            registry
        };
        out.push(Endpoint {
            base: format!("{}://{host}", if insecure { "http" } else { "https" }),
            mirror: false,
        });
        out
    }

    /// A session for one repository: requests carry `creds` when the registry asks for them.
    pub fn session(&self, r: &Reference, creds: Credentials, push: bool) -> Result<Session> {
        Ok(Session {
            client: self.client(&r.registry)?,
            endpoints: self.endpoints(&r.registry),
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            creds,
            push,
            tokens: self.tokens.clone(),
            mount_from: None,
        })
    }
}

/// Requests to one repository of one registry.
#[derive(Clone)]
pub struct Session {
    client: reqwest::Client,
    endpoints: Vec<Endpoint>,
    registry: String,
    repository: String,
    creds: Credentials,
    push: bool,
    tokens: Tokens,
    /// A repository on the same registry to mount blobs from (push), which the token then
    /// also covers.
    pub mount_from: Option<String>,
}

/// A fetched manifest or index.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub data: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// A blob download in progress.
pub struct BlobStream {
    pub response: Response,
    /// False when the server ignored the Range request and sends the whole blob.
    pub resumed: bool,
}

fn transient(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT
}

impl Session {
    /// The registry host.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    fn scope(&self) -> String {
        let mut s = format!(
            "repository:{}:{}",
            self.repository,
            if self.push { "pull,push" } else { "pull" }
        );
        if let Some(from) = &self.mount_from {
            s.push_str(&format!(" repository:{from}:pull"));
        }
        s
    }

    fn token_key(&self, base: &str) -> (String, String, String) {
        let who = crate::digest::Digest::sha256_of(
            format!(
                "{}\0{}\0{}",
                self.creds.username, self.creds.password, self.creds.identity_token
            )
            .as_bytes(),
        );
        (base.to_string(), self.scope(), who.to_string())
    }

    fn cached_token(&self, base: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(&self.token_key(base))
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(t, _)| t.clone())
    }

    fn basic(&self) -> Option<String> {
        if self.creds.username.is_empty() {
            return None;
        }
        let raw = format!("{}:{}", self.creds.username, self.creds.password);
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }

    /// Answers a challenge: fetches a bearer token (cached per endpoint and scope) or returns
    /// the basic header.
    async fn authorize(&self, base: &str, challenge: &str) -> Result<String> {
        match parse_challenge(challenge) {
            Some(Challenge::Basic) => self.basic().ok_or_else(|| {
                Error::Unauthorized(format!(
                    "{}: authentication required: run `drayctl login {}`",
                    self.registry, self.registry
                ))
            }),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let scope = self.scope();
                let mut req = self.client.get(&realm);
                let mut q: Vec<(&str, String)> = Vec::new();
                if let Some(s) = service.clone() {
                    q.push(("service", s));
                }
                for s in scope.split(' ') {
                    q.push(("scope", s.to_string()));
                }
                let req_builder = if !self.creds.identity_token.is_empty() {
                    // OAuth2 refresh-token grant (docker's identity token).
                    let mut form = vec![
                        ("grant_type", "refresh_token".to_string()),
                        ("refresh_token", self.creds.identity_token.clone()),
                        ("client_id", "drayd".to_string()),
                        ("scope", scope.clone()),
                    ];
                    if let Some(s) = service {
                        form.push(("service", s));
                    }
                    self.client.post(&realm).form(&form)
                } else {
                    req = req.query(&q);
                    if let Some(b) = self.basic() {
                        req = req.header(AUTHORIZATION, b);
                    }
                    req
                };
                let resp = req_builder
                    .send()
                    .await
                    .map_err(|e| Error::Remote(format!("{}: getting a token from {realm}: {e}", self.registry)))?;
                let status = resp.status();
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    return Err(Error::Unauthorized(format!(
                        "{}: the token server refused the credentials ({status}): check `drayctl login {}`",
                        self.registry, self.registry
                    )));
                }
                if !status.is_success() {
                    return Err(Error::Remote(format!(
                        "{}: token server {realm} answered {status}",
                        self.registry
                    )));
                }
                let body = read_limited(resp, 64 << 10).await?;
                let tok: TokenResponse = serde_json::from_slice(&body)
                    .map_err(|e| Error::Remote(format!("{}: malformed token response: {e}", self.registry)))?;
                if tok.bearer().is_empty() {
                    return Err(Error::Remote(format!(
                        "{}: the token server returned no token",
                        self.registry
                    )));
                }
                // A token lives at most a day here whatever the server says (and no arithmetic overflows).
                let ttl = Duration::from_secs(tok.expires_in.unwrap_or(60).clamp(10, 86_400));
                let header = format!("Bearer {}", tok.bearer());
                self.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(
                    self.token_key(base),
                    (header.clone(), Instant::now() + (ttl - Duration::from_secs(5))),
                );
                Ok(header)
            }
            None => Err(Error::Unauthorized(format!(
                "{}: unsupported authentication challenge {challenge:?}",
                self.registry
            ))),
        }
    }

    /// Sends a request built by `make` to one endpoint: with a cached token, answering one
    /// 401 challenge, retrying transient failures with backoff.
    async fn send(
        &self,
        ep: &Endpoint,
        make: &(dyn Fn(&reqwest::Client, &str) -> RequestBuilder + Sync),
    ) -> Result<Response> {
        let mut auth = self.cached_token(&ep.base);
        let mut answered = false;
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = make(&self.client, &ep.base);
            if let Some(a) = &auth {
                req = req.header(AUTHORIZATION, a);
            }
            match req.send().await {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !answered => {
                    let challenge = resp
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                        .ok_or_else(|| Error::Unauthorized(format!("{}: 401 without a challenge", self.registry)))?;
                    auth = Some(self.authorize(&ep.base, &challenge).await?);
                    answered = true;
                }
                Ok(resp) if transient(resp.status()) && attempt < ATTEMPTS => {
                    tracing::debug!(status = %resp.status(), base = %ep.base, "retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Ok(resp) => return Ok(resp),
                Err(e) if attempt < ATTEMPTS && (e.is_connect() || e.is_timeout() || e.is_request()) => {
                    tracing::debug!(error = %e, base = %ep.base, "retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(e) => return Err(Error::Remote(format!("{}: {}", ep.base, error_chain(&e)))),
            }
        }
    }

    fn url(&self, base: &str, kind: &str, object: &str) -> String {
        format!("{base}/v2/{}/{kind}/{object}", self.repository)
    }

    /// Sends a GET built by `make` to each endpoint in turn (mirrors first) and returns the
    /// first response whose status `wanted` accepts. A mirror that fails or refuses is passed
    /// over; the registry's own failure is the error.
    async fn first_answer(
        &self,
        object: &str,
        make: &(dyn Fn(&reqwest::Client, &str) -> RequestBuilder + Sync),
        wanted: &(dyn Fn(StatusCode) -> bool + Sync),
    ) -> Result<Response> {
        let mut last = None;
        for ep in self.endpoints.iter() {
            let e = match self.send(ep, make).await {
                Ok(resp) if wanted(resp.status()) => return Ok(resp),
                Ok(resp) => status_error(&self.registry, &self.repository, object, resp).await,
                Err(e) => e,
            };
            if !ep.mirror {
                return Err(e);
            }
            last = Some(e);
        }
        Err(last.unwrap_or_else(|| Error::Remote(format!("{}: no endpoint answered", self.registry))))
    }

    /// Fetches a manifest or index by tag or digest (`accept` lists the media types we
    /// understand). The body's digest is computed and must equal the digest asked for, or
    /// the one the registry names in `Docker-Content-Digest`.
    pub async fn manifest(&self, object: &str, accept: &[&str]) -> Result<Fetched> {
        let accept = accept.join(", ");
        let resp = self
            .first_answer(
                object,
                &|c, base| {
                    c.get(self.url(base, "manifests", object))
                        .header(ACCEPT, accept.as_str())
                },
                &|s| s.is_success(),
            )
            .await?;
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let media_type = header(CONTENT_TYPE.as_str()).unwrap_or_default();
        let header_digest = header("docker-content-digest");
        if resp.content_length().is_some_and(|l| l > MAX_METADATA_BLOB) {
            return Err(Error::BadContent(format!(
                "{object}: manifest larger than {MAX_METADATA_BLOB} bytes"
            )));
        }
        let data = read_limited(resp, MAX_METADATA_BLOB).await?;
        let expected = match object.parse::<Digest>() {
            Ok(d) => Some(d),
            Err(_) => header_digest.and_then(|h| h.parse::<Digest>().ok()),
        };
        let digest = match expected {
            Some(d) => {
                let mut h = d.hasher();
                h.update(&data);
                let got = h.finish();
                if got != d {
                    return Err(Error::BadContent(format!(
                        "{}/{}: manifest {object} has digest {got}, expected {d}: refusing it",
                        self.registry, self.repository
                    )));
                }
                d
            }
            None => Digest::sha256_of(&data),
        };
        Ok(Fetched {
            data,
            media_type,
            digest,
        })
    }

    /// Starts a blob download at `offset` (a Range request when > 0).
    pub async fn blob(&self, digest: &Digest, offset: u64) -> Result<BlobStream> {
        let object = digest.to_string();
        let resp = self
            .first_answer(
                &object,
                &|c, base| {
                    let r = c.get(self.url(base, "blobs", &object));
                    if offset > 0 {
                        r.header(RANGE, format!("bytes={offset}-"))
                    } else {
                        r
                    }
                },
                &|s| s.is_success() || (offset > 0 && s == StatusCode::RANGE_NOT_SATISFIABLE),
            )
            .await?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT if offset > 0 => Ok(BlobStream {
                response: resp,
                resumed: true,
            }),
            // What we have is already everything (or more): start over.
            StatusCode::RANGE_NOT_SATISFIABLE => Box::pin(self.blob(digest, 0)).await,
            _ => Ok(BlobStream {
                response: resp,
                resumed: false,
            }),
        }
    }

    fn upstream(&self) -> &Endpoint {
        // The last endpoint is always the registry itself (mirrors come first).
        &self.endpoints[self.endpoints.len() - 1]
    }

    /// True when the registry has the blob in this repository.
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let object = digest.to_string();
        let resp = self
            .send(self.upstream(), &|c, base| c.head(self.url(base, "blobs", &object)))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(&self.registry, &self.repository, &object, resp).await),
        }
    }

    /// Asks the registry to mount a blob from another repository of its own; true when it did.
    pub async fn mount_blob(&self, digest: &Digest, from: &str) -> Result<bool> {
        let url_of = |base: &str| {
            format!(
                "{base}/v2/{}/blobs/uploads/?mount={digest}&from={from}",
                self.repository
            )
        };
        let resp = self
            .send(self.upstream(), &|c, base| {
                c.post(url_of(base)).header(CONTENT_LENGTH, "0")
            })
            .await?;
        Ok(resp.status() == StatusCode::CREATED)
    }

    /// Uploads a blob: POST to open an upload, then a monolithic PUT with the digest.
    pub async fn push_blob(&self, digest: &Digest, body: reqwest::Body, size: u64) -> Result<()> {
        let resp = self
            .send(self.upstream(), &|c, base| {
                c.post(format!("{base}/v2/{}/blobs/uploads/", self.repository))
                    .header(CONTENT_LENGTH, "0")
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(status_error(&self.registry, &self.repository, "blob upload", resp).await);
        }
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Remote(format!("{}: upload without a Location", self.registry)))?
            .to_string();
        let base = self.upstream().base.clone();
        let mut url = reqwest::Url::parse(&location)
            .or_else(|_| reqwest::Url::parse(&base).and_then(|b| b.join(&location)))
            .map_err(|e| Error::Remote(format!("{}: bad upload location {location:?}: {e}", self.registry)))?;
        url.query_pairs_mut().append_pair("digest", &digest.to_string());
        let mut req = self
            .client
            .request(Method::PUT, url.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size.to_string())
            .body(body);
        // Credentials go only to the registry itself, never to another host the upload
        // location may name (storage back ends hand out their own signed URLs).
        let same_origin = reqwest::Url::parse(&base)
            .map(|b| {
                b.scheme() == url.scheme()
                    && b.host_str() == url.host_str()
                    && b.port_or_known_default() == url.port_or_known_default()
            })
            .unwrap_or(false);
        if let Some(a) = same_origin
            .then(|| self.cached_token(&base).or_else(|| self.basic()))
            .flatten()
        {
            req = req.header(AUTHORIZATION, a);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Error::Remote(format!("{}: uploading {digest}: {}", self.registry, error_chain(&e))))?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(&self.registry, &self.repository, &digest.to_string(), resp).await);
        }
        Ok(())
    }

    /// Uploads a manifest under a tag or digest.
    pub async fn put_manifest(&self, object: &str, media_type: &str, data: &[u8]) -> Result<()> {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type)
                .map_err(|_| Error::InvalidArgument(format!("bad media type {media_type:?}")))?,
        );
        let resp = self
            .send(self.upstream(), &|c, base| {
                c.put(self.url(base, "manifests", object))
                    .headers(headers.clone())
                    .body(data.to_vec())
            })
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(&self.registry, &self.repository, object, resp).await);
        }
        Ok(())
    }

    /// Checks that the credentials work against the registry's `/v2/` endpoint (login).
    pub async fn ping(&self) -> Result<()> {
        let resp = self
            .send(self.upstream(), &|c, base| c.get(format!("{base}/v2/")))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Error::Unauthorized(format!(
                "{}: unauthorized: incorrect username or password",
                self.registry
            ))),
            s => Err(Error::Remote(format!("{}: /v2/ answered {s}", self.registry))),
        }
    }
}

/// Reads a whole response body, refusing more than `limit` bytes.
async fn read_limited(mut resp: Response, limit: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Error::Remote(format!("reading a response: {}", error_chain(&e))))?
    {
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(Error::BadContent(format!("response larger than {limit} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The registry's error (its JSON `errors` when present) as a domain error.
async fn status_error(registry: &str, repo: &str, object: &str, resp: Response) -> Error {
    let status = resp.status();
    let body = read_limited(resp, 64 << 10).await.unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errs {
        errors: Vec<E>,
    }
    #[derive(serde::Deserialize)]
    struct E {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let detail = serde_json::from_slice::<Errs>(&body)
        .ok()
        .and_then(|e| e.errors.into_iter().next())
        .map(|e| format!("{}: {}", e.code, e.message))
        .unwrap_or_else(|| status.to_string());
    let what = format!("{registry}/{repo}: {object}: {detail}");
    match status {
        StatusCode::NOT_FOUND => Error::NotFound(what),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Unauthorized(format!(
            "{what}: run `drayctl login {registry}` if the repository is private"
        )),
        _ => Error::Remote(what),
    }
}

/// An error with its causes ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_plain_http() {
        assert!(is_loopback_host("localhost:5000"));
        assert!(is_loopback_host("127.0.0.1:5000"));
        assert!(is_loopback_host("127.1.2.3"));
        assert!(is_loopback_host("[::1]:5000"));
        assert!(!is_loopback_host("registry.example:5000"));
        let r = Registries::new(BTreeMap::new());
        assert_eq!(r.endpoints("127.0.0.1:5000")[0].base, "http://127.0.0.1:5000");
        assert_eq!(r.endpoints("docker.io")[0].base, "https://registry-1.docker.io");
    }
}
