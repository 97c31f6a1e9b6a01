//! pull, images, tag, rmi, history, inspect.

use anyhow::Result;
use clap::Args;
use dray_proto::v1 as pb;
use serde_json::{json, Value};

use super::Exit;
use crate::client::Client;
use crate::credentials;
use crate::format::{print, Format};
use crate::progress::Renderer;
use crate::units::{human_size, since};
use crate::DaemonError;

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Image name: NAME[:TAG|@DIGEST]
    pub image: String,
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
}

/// The registry host of a reference, as drayd normalises it (for credentials).
fn registry_of(image: &str) -> String {
    let name = image.split('@').next().unwrap_or(image);
    match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first.to_string(),
        _ => "docker.io".into(),
    }
}

pub fn auth_for(image: &str) -> Result<Option<pb::RegistryAuth>> {
    Ok(credentials::get(&registry_of(image))?.map(|a| pb::RegistryAuth {
        username: a.username,
        password: a.password,
        identity_token: a.identity_token,
    }))
}

fn has_tag_or_digest(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    image.contains('@') || last.contains(':')
}

pub async fn pull(c: &Client, a: PullArgs) -> Result<u8> {
    if !has_tag_or_digest(&a.image) && !a.quiet {
        println!("Using default tag: latest");
    }
    let req = pb::PullRequest {
        reference: a.image.clone(),
        platform: a.platform.unwrap_or_default(),
        auth: auth_for(&a.image)?,
    };
    let mut stream = c.images().pull(req).await.map_err(DaemonError::from)?.into_inner();
    let mut r = Renderer::new(a.quiet);
    // Ctrl-C closes the stream, which cancels the pull in drayd (partial blobs stay for a resume).
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut done: Option<pb::ImageSummary> = None;
    loop {
        tokio::select! {
            _ = &mut interrupted => {
                r.finish();
                eprintln!("pull interrupted: downloaded data is kept and the next pull resumes it");
                return Err(Exit(130).into());
            }
            msg = stream.message() => {
                match msg.map_err(DaemonError::from)? {
                    Some(p) => {
                        if p.action == pb::pull_progress::Action::Done as i32 {
                            done = p.image;
                        } else {
                            r.show(&p);
                        }
                    }
                    None => break,
                }
            }
        }
    }
    r.finish();
    if done.is_none() {
        return Err(DaemonError("the pull ended without a result".into()).into());
    }
    println!("{}", full_name(&a.image));
    Ok(0)
}

/// What docker prints after a pull: the fully qualified reference.
fn full_name(image: &str) -> String {
    let reg = registry_of(image);
    let mut s = if image.starts_with(&format!("{reg}/")) {
        image.to_string()
    } else if reg == "docker.io" && !image.split('@').next().unwrap_or(image).contains('/') {
        format!("docker.io/library/{image}")
    } else {
        format!("docker.io/{image}")
    };
    if !has_tag_or_digest(image) {
        s.push_str(":latest");
    }
    s
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Image name: NAME[:TAG]
    pub image: String,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
}

pub async fn push(c: &Client, a: PushArgs) -> Result<u8> {
    let req = pb::PushRequest {
        reference: a.image.clone(),
        auth: auth_for(&a.image)?,
    };
    let mut stream = c.images().push(req).await.map_err(DaemonError::from)?.into_inner();
    let mut r = Renderer::for_push(a.quiet);
    while let Some(p) = stream.message().await.map_err(DaemonError::from)? {
        if p.action != pb::pull_progress::Action::Done as i32 {
            r.show(&p);
        }
    }
    r.finish();
    Ok(0)
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter output based on conditions provided (dangling=, reference=, label=)
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'json', or a Go template)
    #[arg(long)]
    pub format: Option<String>,
    /// Show images of this repository[:tag] only
    pub repository: Option<String>,
}

fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.trim_start_matches("sha256:").chars().take(12).collect()
    }
}

pub async fn list(c: &Client, a: ListArgs) -> Result<u8> {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.repository {
        filters.push(format!("reference={r}"));
    }
    let resp = c
        .images()
        .list(pb::ListImagesRequest { all: a.all, filters })
        .await
        .map_err(DaemonError::from)?
        .into_inner();
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for i in &resp.images {
            let id = short_id(&i.id, a.no_trunc);
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(0);
    }
    let mut rows = Vec::new();
    for i in &resp.images {
        let digest_of = |repo: &str| {
            i.repo_digests
                .iter()
                .find(|d| d.split('@').next() == Some(repo))
                .and_then(|d| d.split('@').nth(1))
                .unwrap_or("<none>")
                .to_string()
        };
        let mut entries: Vec<(String, String)> = i
            .repo_tags
            .iter()
            .map(|t| {
                let (repo, tag) = t
                    .rsplit_once(':')
                    .filter(|(r, _)| !r.is_empty())
                    .unwrap_or((t.as_str(), "<none>"));
                (repo.to_string(), tag.to_string())
            })
            .collect();
        if entries.is_empty() {
            // Untagged: docker shows each repo digest's repository, or <none>.
            for d in &i.repo_digests {
                entries.push((d.split('@').next().unwrap_or("<none>").to_string(), "<none>".into()));
            }
            if entries.is_empty() {
                entries.push(("<none>".into(), "<none>".into()));
            }
        }
        for (repo, tag) in entries {
            rows.push(json!({
                "Repository": repo,
                "Tag": tag,
                "Digest": digest_of(&repo),
                "ID": short_id(&i.id, a.no_trunc),
                "CreatedSince": since(&i.created),
                "CreatedAt": i.created,
                "Size": human_size(i.size),
                "VirtualSize": human_size(i.size),
                "SharedSize": "N/A",
                "UniqueSize": "N/A",
                "Containers": "N/A",
            }));
        }
    }
    let fmt = Format::parse(a.format.as_deref());
    let mut cols = vec![("REPOSITORY", "Repository"), ("TAG", "Tag")];
    if a.digests {
        cols.push(("DIGEST", "Digest"));
    }
    cols.extend([("IMAGE ID", "ID"), ("CREATED", "CreatedSince"), ("SIZE", "Size")]);
    let mut extra = cols.clone();
    extra.extend([("CREATED AT", "CreatedAt"), ("DIGEST", "Digest")]);
    match fmt {
        Format::Table => print(&fmt, &cols, &rows)?,
        _ => print(&fmt, &extra, &rows)?,
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct TagArgs {
    /// SOURCE_IMAGE[:TAG]
    pub source: String,
    /// TARGET_IMAGE[:TAG]
    pub target: String,
}

pub async fn tag(c: &Client, a: TagArgs) -> Result<u8> {
    c.images()
        .tag(pb::TagRequest {
            source: a.source,
            target: a.target,
        })
        .await
        .map_err(DaemonError::from)?;
    Ok(0)
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Images to remove
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Force removal of the image
    #[arg(short, long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long)]
    pub no_prune: bool,
}

pub async fn rmi(c: &Client, a: RmiArgs) -> Result<u8> {
    let mut failed = false;
    for img in a.images {
        let req = pb::RemoveImageRequest {
            reference: img,
            force: a.force,
            no_prune: a.no_prune,
        };
        match c.images().remove(req).await {
            Ok(r) => {
                let r = r.into_inner();
                for u in r.untagged {
                    println!("Untagged: {u}");
                }
                for d in r.deleted {
                    println!("Deleted: {d}");
                }
            }
            Err(s) => {
                eprintln!("Error: {}", s.message());
                failed = true;
            }
        }
    }
    if failed {
        return Err(Exit(1).into());
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Images to inspect
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
}

/// docker's image inspect JSON from drayd's image detail.
pub fn inspect_json(d: &pb::ImageDetail) -> Result<Value> {
    let s = d.summary.clone().unwrap_or_default();
    let cfg: Value = serde_json::from_slice(&d.config).unwrap_or(Value::Null);
    let get = |k: &str| cfg.get(k).cloned().unwrap_or(Value::Null);
    let str_of = |k: &str| cfg.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut graph = serde_json::Map::new();
    let mut keys: Vec<_> = d.graph_driver.iter().collect();
    keys.sort();
    for (k, v) in keys {
        graph.insert(k.clone(), json!(v));
    }
    let mut out = json!({
        "Id": s.id,
        "RepoTags": s.repo_tags,
        "RepoDigests": s.repo_digests,
        "Parent": "",
        "Comment": cfg.get("comment").and_then(Value::as_str).unwrap_or(""),
        "Created": str_of("created"),
        "Container": str_of("container"),
        "ContainerConfig": get("container_config"),
        "DockerVersion": str_of("docker_version"),
        "Author": str_of("author"),
        "Config": get("config"),
        "Architecture": str_of("architecture"),
        "Os": str_of("os"),
        "Size": s.size,
        "VirtualSize": s.size,
        "GraphDriver": { "Data": graph, "Name": d.graph_driver_name },
        "RootFS": { "Type": "layers", "Layers": d.diff_ids },
        "Metadata": { "LastTagTime": "0001-01-01T00:00:00Z" },
    });
    if let Some(v) = cfg.get("variant").and_then(Value::as_str) {
        out.as_object_mut().map(|o| o.insert("Variant".into(), json!(v)));
    }
    Ok(out)
}

pub async fn inspect(c: &Client, a: InspectArgs) -> Result<u8> {
    let mut out = Vec::new();
    let mut failed = false;
    for img in &a.images {
        match c.images().get(pb::GetImageRequest { reference: img.clone() }).await {
            Ok(d) => out.push(inspect_json(&d.into_inner())?),
            Err(s) => {
                eprintln!("Error: {}", s.message());
                failed = true;
            }
        }
    }
    super::print_documents(out, a.format.as_deref())?;
    if failed {
        return Err(Exit(1).into());
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Image
    pub image: String,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

pub async fn history(c: &Client, a: HistoryArgs) -> Result<u8> {
    let d = c
        .images()
        .get(pb::GetImageRequest {
            reference: a.image.clone(),
        })
        .await
        .map_err(DaemonError::from)?
        .into_inner();
    let cfg: Value = serde_json::from_slice(&d.config).unwrap_or(Value::Null);
    let id = d.summary.as_ref().map(|s| s.id.clone()).unwrap_or_default();
    let hist: Vec<Value> = cfg
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut sizes = d.layer_sizes.iter();
    let mut rows: Vec<Value> = Vec::new();
    for h in &hist {
        let empty = h.get("empty_layer").and_then(Value::as_bool).unwrap_or(false);
        let size = if empty { 0 } else { sizes.next().copied().unwrap_or(0) };
        let created = h.get("created").and_then(Value::as_str).unwrap_or("");
        let mut by = h.get("created_by").and_then(Value::as_str).unwrap_or("").to_string();
        if !a.no_trunc && by.chars().count() > 45 {
            by = by.chars().take(44).collect::<String>() + "…";
        }
        rows.push(json!({
            "ID": "<missing>",
            "CreatedSince": if a.human { since(created) } else { created.to_string() },
            "CreatedAt": created,
            "CreatedBy": by,
            "Size": if a.human { human_size(size) } else { size.to_string() },
            "Comment": h.get("comment").and_then(Value::as_str).unwrap_or(""),
        }));
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top["ID"] = json!(short_id(&id, a.no_trunc));
    }
    if a.quiet {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or(""));
        }
        return Ok(0);
    }
    let cols = [
        ("IMAGE", "ID"),
        ("CREATED", "CreatedSince"),
        ("CREATED BY", "CreatedBy"),
        ("SIZE", "Size"),
        ("COMMENT", "Comment"),
    ];
    print(&Format::parse(a.format.as_deref()), &cols, &rows)?;
    Ok(0)
}
