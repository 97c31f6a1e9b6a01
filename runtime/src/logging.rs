//! Logs as runc writes them: `--log FILE` with `--log-format text|json`. JSON lines are
//! `{"level":"error","msg":"...","time":"..."}`, which containerd's runc shim parses to report
//! the runtime's last error.

use std::io::Write;
use std::sync::Mutex;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context as LayerCtx, Layer};
use tracing_subscriber::prelude::*;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// runc's logrus text: `time="..." level=error msg="..."`.
    Text,
    /// One JSON object per line.
    Json,
    /// `dray: error: message`, for a terminal (stderr when no --log is given).
    Plain,
}

struct Sink {
    out: Mutex<Box<dyn Write + Send>>,
    format: Format,
}

struct MsgVisitor(String);

impl tracing::field::Visit for MsgVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        } else {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Formats one log line.
pub fn line(format: Format, level: &str, msg: &str, time: &str) -> String {
    match format {
        Format::Json => serde_json::json!({"level": level, "msg": msg, "time": time}).to_string(),
        Format::Text => format!("time={time:?} level={level} msg={msg:?}"),
        Format::Plain if level == "error" => format!("dray: {msg}"),
        Format::Plain => format!("dray: {level}: {msg}"),
    }
}

impl<S: Subscriber> Layer<S> for Sink {
    fn on_event(&self, event: &Event<'_>, _ctx: LayerCtx<'_, S>) {
        let mut v = MsgVisitor(String::new());
        event.record(&mut v);
        let l = line(
            self.format,
            level_name(event.metadata().level()),
            &v.0,
            &crate::time::now(),
        );
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{l}");
        }
    }
}

/// Installs the logger: to `file` (appending) in `format`, else to stderr, at debug level with
/// `debug`, else warnings and errors. On stderr, lines are plain (`dray: ...`) unless `debug`
/// asks for runc's: `--debug` output is read by tools that parse logrus lines
/// (`level=debug msg="..."`, or JSON with `--log-format json`).
pub fn init(file: Option<&std::path::Path>, format: Format, debug: bool) -> std::io::Result<()> {
    let (out, format): (Box<dyn Write + Send>, Format) = match file {
        Some(p) => (
            Box::new(std::fs::OpenOptions::new().create(true).append(true).open(p)?),
            format,
        ),
        None if debug => (Box::new(std::io::stderr()), format),
        None => (Box::new(std::io::stderr()), Format::Plain),
    };
    init_writer(out, format, if debug { Level::DEBUG } else { Level::WARN });
    Ok(())
}

/// Installs the logger on any writer (the shim's `log` FIFO, opened without blocking), with
/// `max` the most verbose level kept.
pub fn init_writer(out: Box<dyn Write + Send>, format: Format, max: Level) {
    let sink = Sink {
        out: Mutex::new(out),
        format,
    };
    let _ = tracing_subscriber::registry()
        .with(sink.with_filter(tracing_subscriber::filter::LevelFilter::from_level(max)))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_have_runc_fields() {
        let l = line(Format::Json, "error", "boom \"x\"", "2024-01-01T00:00:00Z");
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "boom \"x\"");
        assert_eq!(v["time"], "2024-01-01T00:00:00Z");
    }
}
