//! save, load, import: image archives streamed to and from drayd.

use std::io::{IsTerminal, Read, Write};

use anyhow::{Context, Result};
use clap::Args;
use dray_proto::v1 as pb;
use tokio::sync::mpsc;

use crate::client::Client;
use crate::progress::Renderer;
use crate::DaemonError;

const CHUNK: usize = 1 << 20;

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Images to save (names keep their tags; IDs save no name)
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<String>,
    /// docker-archive (default; also an OCI layout) or oci-archive
    #[arg(long, default_value = "docker-archive")]
    pub format: String,
}

pub async fn save(c: &Client, a: SaveArgs) -> Result<u8> {
    if a.output.is_none() && std::io::stdout().is_terminal() {
        anyhow::bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let req = pb::SaveRequest {
        references: a.images,
        format: a.format,
    };
    let stream = c.images().save(req).await.map_err(DaemonError::from)?.into_inner();
    write_chunks(stream, a.output.as_deref()).await?;
    Ok(0)
}

/// Writes a stream of chunks to `output` (through a temporary file renamed at the end, so
/// that a failure leaves no partial file) or to stdout (`save`, `export`).
pub async fn write_chunks(mut stream: tonic::Streaming<pb::Chunk>, output: Option<&str>) -> Result<()> {
    let tmp = output.map(|o| format!("{o}.drayctl-tmp"));
    let mut out: Box<dyn Write> = match &tmp {
        Some(t) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(t).with_context(|| format!("creating {t}"))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let result: Result<()> = async {
        while let Some(chunk) = stream.message().await.map_err(DaemonError::from)? {
            out.write_all(&chunk.data)?;
        }
        out.flush()?;
        Ok(())
    }
    .await;
    drop(out);
    match (result, &tmp, output) {
        (Ok(()), Some(t), Some(o)) => std::fs::rename(t, o).with_context(|| format!("writing {o}"))?,
        (Ok(()), _, _) => {}
        (Err(e), t, _) => {
            if let Some(t) = t {
                let _ = std::fs::remove_file(t);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Streams a file (or stdin) to drayd in chunks, from a thread (reads block).
fn read_input(path: Option<String>) -> Result<mpsc::Receiver<std::io::Result<Vec<u8>>>> {
    let mut input: Box<dyn Read + Send> = match &path {
        Some(p) if p != "-" => Box::new(std::fs::File::open(p).with_context(|| format!("opening {p}"))?),
        _ => {
            if std::io::stdin().is_terminal() {
                anyhow::bail!("requested load from stdin, but stdin is empty: give -i FILE or redirect an archive");
            }
            Box::new(std::io::stdin())
        }
    };
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || loop {
        let mut buf = vec![0u8; CHUNK];
        match input.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                if tx.blocking_send(Ok(buf)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    });
    Ok(rx)
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

pub async fn load(c: &Client, a: LoadArgs) -> Result<u8> {
    let mut rx = read_input(a.input)?;
    let (err_tx, mut err_rx) = mpsc::channel::<std::io::Error>(1);
    let outgoing = async_stream(move |tx: mpsc::Sender<pb::LoadRequest>| async move {
        while let Some(r) = rx.recv().await {
            match r {
                Ok(data) => {
                    if tx.send(pb::LoadRequest { data }).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = err_tx.send(e).await;
                    return;
                }
            }
        }
    });
    let mut stream = c.images().load(outgoing).await.map_err(DaemonError::from)?.into_inner();
    let mut r = Renderer::new(true);
    loop {
        match stream.message().await {
            Ok(Some(p)) => {
                if p.action == pb::pull_progress::Action::Message as i32 {
                    println!("{}", p.message);
                } else {
                    r.show(&p);
                }
            }
            Ok(None) => break,
            Err(s) => {
                if let Ok(e) = err_rx.try_recv() {
                    anyhow::bail!("reading the archive: {e}");
                }
                return Err(DaemonError::from(s).into());
            }
        }
    }
    Ok(0)
}

/// A request stream fed by `f` through a channel.
fn async_stream<T: Send + 'static, F, Fut>(f: F) -> tokio_stream_like::Stream<T>
where
    F: FnOnce(mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(f(tx));
    tokio_stream_like::Stream(rx)
}

/// A minimal `Stream` over an mpsc receiver (what tonic's client streaming takes).
mod tokio_stream_like {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub struct Stream<T>(pub tokio::sync::mpsc::Receiver<T>);

    impl<T> futures_core::Stream for Stream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Tarball of a root file system (plain, gzip or zstd), or - for STDIN
    pub file: String,
    /// Name of the new image: REPOSITORY[:TAG]
    pub reference: Option<String>,
    /// Apply Dockerfile instructions to the created image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    pub message: Option<String>,
    /// Set platform of the image (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
}

pub async fn import(c: &Client, a: ImportArgs) -> Result<u8> {
    if a.file.starts_with("http://") || a.file.starts_with("https://") {
        anyhow::bail!("importing from a URL is not supported: download the tarball and give its path");
    }
    let mut rx = read_input(Some(a.file.clone()))?;
    let first = pb::ImportRequest {
        reference: a.reference.unwrap_or_default(),
        changes: a.change,
        message: a.message.unwrap_or_default(),
        platform: a.platform.unwrap_or_default(),
        data: Vec::new(),
    };
    let (err_tx, mut err_rx) = mpsc::channel::<std::io::Error>(1);
    let outgoing = async_stream(move |tx: mpsc::Sender<pb::ImportRequest>| async move {
        if tx.send(first).await.is_err() {
            return;
        }
        while let Some(r) = rx.recv().await {
            match r {
                Ok(data) => {
                    if tx
                        .send(pb::ImportRequest {
                            data,
                            ..Default::default()
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = err_tx.send(e).await;
                    return;
                }
            }
        }
    });
    match c.images().import(outgoing).await {
        Ok(r) => {
            println!("{}", r.into_inner().id);
            Ok(0)
        }
        Err(s) => {
            if let Ok(e) = err_rx.try_recv() {
                anyhow::bail!("reading {}: {e}", a.file);
            }
            Err(DaemonError::from(s).into())
        }
    }
}
