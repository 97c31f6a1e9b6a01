//! One file per command group; each command calls drayd and prints as docker does.

pub mod archive;
pub mod containers;
pub mod copy;
pub mod images;
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
