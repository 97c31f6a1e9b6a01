//! Output: docker's aligned tables (Go tabwriter: min width 10, padding 3) and `--format`
//! with the Go-template forms people use: `{{.Field}}`, `{{json .}}`, `{{json .Field}}`,
//! `table …` (with a header), `json` (one JSON object per line), `\t` and `\n`.

use serde_json::Value;

/// Renders rows as docker's tabwriter does.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths = vec![0usize; cols];
    for (i, h) in header.iter().enumerate() {
        widths[i] = h.chars().count();
    }
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            l.push_str(c);
            if i + 1 < cells.len() {
                // A value may hold a tab (a template row split on tabs): extra cells get no width.
                let w = (widths.get(i).copied().unwrap_or(0) + 3).max(10);
                l.push_str(&" ".repeat(w - c.chars().count()));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// A parsed `--format` value.
pub enum Format {
    /// docker's default table.
    Table,
    /// `json`: one object per line.
    Json,
    /// A template, with a header row when it started with `table`.
    Template { template: String, header: bool },
}

impl Format {
    pub fn parse(s: Option<&str>) -> Format {
        match s {
            None | Some("") | Some("table") => Format::Table,
            Some("json") => Format::Json,
            Some(t) => match t.strip_prefix("table") {
                Some(rest) => Format::Template {
                    template: rest.trim_start().to_string(),
                    header: true,
                },
                None => Format::Template {
                    template: t.to_string(),
                    header: false,
                },
            },
        }
    }
}

/// Expands a template over one object (keys as docker's field names).
pub fn render(template: &str, obj: &Value) -> anyhow::Result<String> {
    let t = template.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = t.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| anyhow::anyhow!("template: unclosed action in {template:?}"))?
            + start;
        let action = rest[start + 2..end].trim();
        out.push_str(&action_value(action, obj)?);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup<'a>(path: &str, obj: &'a Value) -> anyhow::Result<&'a Value> {
    if path == "." {
        return Ok(obj);
    }
    let mut cur = obj;
    for part in path.trim_start_matches('.').split('.') {
        cur = cur
            .get(part)
            .ok_or_else(|| anyhow::anyhow!("template: can't evaluate field {part}"))?;
    }
    Ok(cur)
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".into(),
        Value::Array(a) => format!("[{}]", a.iter().map(plain).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", plain(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

fn action_value(action: &str, obj: &Value) -> anyhow::Result<String> {
    let words: Vec<&str> = action.split_whitespace().collect();
    match words.as_slice() {
        ["json", path] => Ok(serde_json::to_string(lookup(path, obj)?)?),
        ["upper", path] => Ok(plain(lookup(path, obj)?).to_uppercase()),
        ["lower", path] => Ok(plain(lookup(path, obj)?).to_lowercase()),
        ["join", path, sep] => {
            let v = lookup(path, obj)?;
            let sep = sep.trim_matches('"');
            Ok(v.as_array()
                .map(|a| a.iter().map(plain).collect::<Vec<_>>().join(sep))
                .unwrap_or_else(|| plain(v)))
        }
        [path] if path.starts_with('.') => Ok(plain(lookup(path, obj)?)),
        _ => anyhow::bail!("template: unsupported action {{{{{action}}}}}"),
    }
}

/// Header of a `table` template: each `{{.Field}}` becomes its column title.
pub fn header_of(template: &str, titles: &dyn Fn(&str) -> String) -> String {
    let t = template.replace("\\t", "\t");
    let mut out = String::new();
    let mut rest = t.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}").map(|e| e + start) else {
            break;
        };
        let action = rest[start + 2..end].trim();
        let field = action.split_whitespace().last().unwrap_or("").trim_start_matches('.');
        out.push_str(&titles(field));
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Prints rows of objects in the chosen format; `columns` are (title, field) of the default table.
pub fn print(format: &Format, columns: &[(&str, &str)], objs: &[Value]) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let header: Vec<&str> = columns.iter().map(|(t, _)| *t).collect();
            let rows: Vec<Vec<String>> = objs
                .iter()
                .map(|o| {
                    columns
                        .iter()
                        .map(|(_, f)| o.get(*f).map(plain).unwrap_or_default())
                        .collect()
                })
                .collect();
            print!("{}", table(&header, &rows));
        }
        Format::Json => {
            for o in objs {
                println!("{}", serde_json::to_string(o)?);
            }
        }
        Format::Template { template, header } => {
            let mut lines = Vec::new();
            for o in objs {
                lines.push(render(template, o)?);
            }
            if *header {
                let title = |f: &str| {
                    columns
                        .iter()
                        .find(|(_, cf)| *cf == f)
                        .map(|(t, _)| t.to_string())
                        .unwrap_or_else(|| f.to_uppercase())
                };
                let h = header_of(template, &title);
                let rows: Vec<Vec<String>> = lines
                    .iter()
                    .map(|l| l.split('\t').map(str::to_string).collect())
                    .collect();
                let hs: Vec<&str> = h.split('\t').collect();
                print!("{}", table(&hs, &rows));
            } else {
                for l in lines {
                    println!("{l}");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_tables() {
        let o = serde_json::json!({"ID": "abc", "Tag": "latest", "Labels": {"a": "b"}});
        assert_eq!(render("{{.ID}}:{{.Tag}}", &o).unwrap(), "abc:latest");
        assert_eq!(render("{{json .Labels}}", &o).unwrap(), r#"{"a":"b"}"#);
        assert!(render("{{.Nope}}", &o).is_err());
        let t = table(&["A", "BB"], &[vec!["x".into(), "y".into()]]);
        assert_eq!(t, "A         BB\nx         y\n");
        // More cells than columns (a tab inside a value) must not panic.
        let t = table(&["A"], &[vec!["x".into(), "y".into(), "z".into()]]);
        assert!(t.contains('z'));
    }
}
