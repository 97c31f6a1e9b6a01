//! One file per command group; each command calls drayd and prints as docker does.

pub mod archive;
pub mod containers;
pub mod copy;
pub mod images;
pub mod networks;
pub mod registry;
pub mod system;
pub mod volumes;

/// Exit with this code without printing more (the command printed its own errors).
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}

impl std::error::Error for Exit {}

/// docker's 4-space indented JSON (inspect).
pub fn pretty(v: &serde_json::Value) -> anyhow::Result<String> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(v, &mut ser)?;
    Ok(String::from_utf8(out)?)
}

/// The documents of `inspect` commands: docker's JSON array, or each rendered through the
/// `--format` template.
pub fn print_documents(docs: Vec<serde_json::Value>, format: Option<&str>) -> anyhow::Result<()> {
    match format {
        Some(f) if f != "json" => {
            for d in &docs {
                println!("{}", crate::format::render(f, d)?);
            }
        }
        _ => println!("{}", pretty(&serde_json::Value::Array(docs))?),
    }
    Ok(())
}

/// docker's prune prompt: `warning`, then "Are you sure you want to continue? [y/N]"; only a
/// yes (read from stdin, whatever it is) goes on.
pub fn confirm(warning: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, Write};
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut ans = String::new();
    std::io::stdin().lock().read_line(&mut ans)?;
    Ok(matches!(ans.trim(), "y" | "Y" | "yes"))
}
