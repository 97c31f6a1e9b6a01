//! Sizes and durations as docker prints them (go-units: HumanSizeWithPrecision(…, 3),
//! HumanDuration).

/// Decimal units, three significant digits: "4.26MB", "920B", "1.2GB".
pub fn human_size(size: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut s = size as f64;
    let mut i = 0;
    while s >= 1000.0 && i < units.len() - 1 {
        s /= 1000.0;
        i += 1;
    }
    format!("{}{}", format_g(s, 3), units[i])
}

/// Binary units, four significant digits, as go-units' BytesSize: "1.953GiB", "416KiB".
pub fn bytes_size(size: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut s = size as f64;
    let mut i = 0;
    while s >= 1024.0 && i < units.len() - 1 {
        s /= 1024.0;
        i += 1;
    }
    format!("{}{}", format_g(s, 4), units[i])
}

/// Go's `%.{digits}g` for the values these units print.
fn format_g(v: f64, digits: i32) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let d = v.abs().log10().floor() as i32 + 1;
    let decimals = (digits - d).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// "Less than a second", "About a minute", "3 hours", "2 weeks".
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let minutes = secs / 60;
    let hours = secs / 3600;
    if secs < 1 {
        "Less than a second".into()
    } else if secs == 1 {
        "1 second".into()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    }
}

/// "2 weeks ago" from an RFC 3339 time; "N/A" when there is none.
pub fn since(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) if t.timestamp() > 0 => {
            format!("{} ago", human_duration(chrono::Utc::now().timestamp() - t.timestamp()))
        }
        _ => "N/A".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_as_docker() {
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(920), "920B");
        assert_eq!(human_size(1_200_000_000), "1.2GB");
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(12_345), "12.3kB");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(15 * 86400), "2 weeks");
        assert_eq!(since(""), "N/A");
    }
}
