//! Byte streams between gRPC and blocking code: a `Read` fed by a client stream (load,
//! import) and a `Write` that becomes a server stream (save). Chunks are bounded, so a slow
//! peer slows the work down instead of filling memory.

use std::io::{self, Read, Write};

use tokio::sync::mpsc;

/// Reads what an async task sends; an `Err` chunk ends the stream with that error.
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    /// A reader and the sender that feeds it.
    pub fn new() -> (mpsc::Sender<io::Result<Vec<u8>>>, ChannelReader) {
        let (tx, rx) = mpsc::channel(16);
        (
            tx,
            ChannelReader {
                rx,
                buf: Vec::new(),
                pos: 0,
            },
        )
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Sends what is written, in chunks of up to 1 MiB; fails once the receiver is gone.
pub struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 1 << 20;

impl ChannelWriter {
    pub fn new(tx: mpsc::Sender<Vec<u8>>) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// The item stream of a byte-producing task (`save`, `export`): the chunks the task writes
/// through a [`ChannelWriter`], then its error, if any, as the stream's last item.
pub fn chunk_stream(
    mut rx: mpsc::Receiver<Vec<u8>>,
    task: tokio::task::JoinHandle<crate::Result<()>>,
) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<dray_proto::v1::Chunk, tonic::Status>> + Send>> {
    let (out_tx, out_rx) = mpsc::channel::<Result<dray_proto::v1::Chunk, tonic::Status>>(8);
    tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if out_tx.send(Ok(dray_proto::v1::Chunk { data })).await.is_err() {
                return;
            }
        }
        let end = match task.await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => super::status(e),
            Err(e) => tonic::Status::internal(format!("task failed: {e}")),
        };
        let _ = out_tx.send(Err(end)).await;
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(out_rx))
}

/// Feeds a client stream's bytes (after `first`) to a blocking reader.
pub fn forward<M: Send + 'static>(
    mut input: tonic::Streaming<M>,
    first: Vec<u8>,
    data: impl Fn(M) -> Vec<u8> + Send + 'static,
) -> ChannelReader {
    let (tx, reader) = ChannelReader::new();
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(Ok(first)).await.is_err() {
            return;
        }
        loop {
            let next = match input.message().await {
                Ok(Some(m)) => Ok(data(m)),
                Ok(None) => return,
                Err(e) => Err(std::io::Error::other(format!(
                    "the client stream failed: {}",
                    e.message()
                ))),
            };
            let failed = next.is_err();
            if tx.send(next).await.is_err() || failed {
                return;
            }
        }
    });
    reader
}
