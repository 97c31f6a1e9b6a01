//! Pull progress as docker shows it: a bar per layer on a TTY (stderr), plain status lines
//! otherwise, nothing with `-q`.

use std::collections::HashMap;
use std::io::IsTerminal;

use dray_proto::v1::pull_progress::Action;
use dray_proto::v1::PullProgress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::units::human_size;

/// Renders a stream of progress events.
pub struct Renderer {
    quiet: bool,
    /// Push wording ("Preparing", "Layer already exists").
    push: bool,
    tty: Option<MultiProgress>,
    bars: HashMap<String, ProgressBar>,
    /// Last status printed per layer (plain mode prints changes only), and in TTY mode each
    /// bar's last status, in the order the layers appeared.
    last: HashMap<String, String>,
    order: Vec<String>,
}

impl Renderer {
    pub fn new(quiet: bool) -> Renderer {
        let tty = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Renderer {
            quiet,
            push: false,
            tty,
            bars: HashMap::new(),
            last: HashMap::new(),
            order: Vec::new(),
        }
    }

    /// A renderer for `push`.
    pub fn for_push(quiet: bool) -> Renderer {
        Renderer {
            push: true,
            ..Renderer::new(quiet)
        }
    }

    fn status(&self, a: Action) -> &'static str {
        match a {
            Action::Waiting if self.push => "Preparing",
            Action::AlreadyExists if self.push => "Layer already exists",
            Action::Waiting => "Pulling fs layer",
            Action::Downloading => "Downloading",
            Action::Verifying => "Verifying Checksum",
            Action::Downloaded => "Download complete",
            Action::Extracting => "Extracting",
            Action::PullComplete => "Pull complete",
            Action::AlreadyExists => "Already exists",
            Action::Pushing => "Pushing",
            Action::Pushed => "Pushed",
            Action::Mounted => "Mounted from another repository",
            Action::Loaded => "Loaded",
            _ => "",
        }
    }

    /// Shows one event.
    pub fn show(&mut self, p: &PullProgress) {
        if self.quiet {
            return;
        }
        let action = Action::try_from(p.action).unwrap_or(Action::Message);
        if p.id.is_empty() {
            if matches!(action, Action::Message | Action::Resolved) && !p.message.is_empty() {
                if !self.bars.is_empty() && action == Action::Message {
                    // The layers are done: their final lines go above what follows, as docker
                    // prints them.
                    self.settle();
                }
                self.println(&p.message);
            }
            return;
        }
        let mounted;
        let status = if action == Action::Mounted && !p.message.is_empty() {
            mounted = format!("Mounted from {}", p.message);
            mounted.as_str()
        } else {
            self.status(action)
        };
        if let Some(mp) = &self.tty {
            if !self.bars.contains_key(&p.id) {
                self.order.push(p.id.clone());
            }
            self.last.insert(p.id.clone(), status.to_string());
            let bar = self.bars.entry(p.id.clone()).or_insert_with(|| {
                let b = mp.add(ProgressBar::new(p.total.max(1)));
                b.set_style(
                    ProgressStyle::with_template("{prefix}: {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b.set_prefix(p.id.clone());
                b
            });
            match action {
                Action::Downloading | Action::Extracting | Action::Pushing if p.total > 0 => {
                    let width = 50usize;
                    let filled = ((p.current.min(p.total) as f64 / p.total as f64) * width as f64) as usize;
                    let arrow = if filled < width { ">" } else { "" };
                    let bar_s = format!(
                        "[{}{}{}]",
                        "=".repeat(filled.saturating_sub(arrow.len())),
                        arrow,
                        " ".repeat(width - filled)
                    );
                    bar.set_message(format!(
                        "{status} {bar_s} {}/{}",
                        human_size(p.current as i64),
                        human_size(p.total as i64)
                    ));
                }
                _ => bar.set_message(status.to_string()),
            }
            bar.tick();
        } else {
            if matches!(action, Action::Downloading | Action::Extracting | Action::Pushing) {
                // Plain output: one line when a phase starts, not one per chunk.
                if self.last.get(&p.id).map(String::as_str) == Some(status) {
                    return;
                }
            }
            if self.last.get(&p.id).map(String::as_str) != Some(status) {
                self.last.insert(p.id.clone(), status.to_string());
                println!("{}: {status}", p.id);
            }
        }
    }

    fn println(&self, s: &str) {
        match &self.tty {
            Some(mp) => {
                let _ = mp.println(s);
            }
            None => println!("{s}"),
        }
    }

    /// Replaces the bars by one line per layer with its last status; later output is plain.
    fn settle(&mut self) {
        let Some(mp) = self.tty.take() else { return };
        for b in self.bars.values() {
            b.finish_and_clear();
        }
        let _ = mp.clear();
        for id in &self.order {
            eprintln!("{id}: {}", self.last.get(id).map(String::as_str).unwrap_or(""));
        }
        self.bars.clear();
    }

    /// Ends the display (the bars' final states stay on the screen).
    pub fn finish(&mut self) {
        self.settle();
    }
}
