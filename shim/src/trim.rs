//! Keeping an idle shim small (docs/performance.md, "shim memory"). A shim lives as long as its
//! container and is idle nearly all that time, so after each burst of requests it gives back
//! what it does not need while it waits:
//!
//! - the heap's free pages, which glibc keeps otherwise (`malloc_trim`);
//! - the page-table entries of its own code and read-only data. The kernel maps file pages 64 KiB
//!   at a time around each fault ("fault-around"), so a 1.5 MiB binary ends up entirely
//!   resident although an idle shim runs a small part of it. Dropping the entries
//!   (MADV_DONTNEED on clean, never-written file mappings) costs nothing: the pages stay in the
//!   page cache, shared with the other shims, and the next request maps what it runs again
//!   with a few minor faults.

/// Gives back the free heap and the mapped code pages (see the module doc).
pub fn trim() {
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
    let (Ok(smaps), Ok(exe)) = (
        std::fs::read_to_string("/proc/self/smaps"),
        std::fs::read_link("/proc/self/exe"),
    ) else {
        return;
    };
    for (start, end) in clean_read_only_mappings(&smaps, &exe.to_string_lossy()) {
        // SAFETY: the range is one of this process's read-only mappings of its own executable
        // that holds no private (written) page: dropping its page-table entries loses no data,
        // the next access maps the same file page again, and no Rust reference can be
        // invalidated by it.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

/// The `[start, end)` ranges of `exe`'s read-only mappings (`r-xp`, `r--p`) that hold no
/// private page, resident or swapped out (smaps `Anonymous:` and `Swap:` both 0), from
/// /proc/self/smaps text. A read-only mapping with private pages was written before it was
/// made read-only (RELRO: the static C library's relocated pointers): dropping those would
/// bring back the unrelocated file contents.
fn clean_read_only_mappings(smaps: &str, exe: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // The candidate mapping being read, and how many of its two counters were seen at 0.
    let mut current: Option<((usize, usize), u8)> = None;
    for l in smaps.lines() {
        let mut f = l.split_whitespace();
        let Some(first) = f.next() else { continue };
        if !first.ends_with(':') {
            current = None;
            let Some((a, b)) = first.split_once('-') else { continue };
            let perms = f.next().unwrap_or_default();
            let path = f.nth(3).unwrap_or_default();
            if path == exe && perms.starts_with('r') && perms.as_bytes().get(1) == Some(&b'-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                    current = Some(((a, b), 0));
                }
            }
        } else if first == "Anonymous:" || first == "Swap:" {
            if let Some((range, clean)) = current.take() {
                if f.next() == Some("0") {
                    if clean == 1 {
                        out.push(range);
                    } else {
                        current = Some((range, clean + 1));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_mappings_of_the_executable() {
        let exe = "/usr/bin/containerd-shim-dray-v2";
        let smaps = format!(
            "\
00200000-00281000 r--p 00000000 fe:00 5310431  {exe}
Rss:                 320 kB
Anonymous:             0 kB
Swap:                  0 kB
00281000-003f7000 r-xp 00080000 fe:00 5310431  {exe}
Anonymous:             0 kB
Swap:                  0 kB
003f7000-003fb000 r--p 001f5000 fe:00 5310431  {exe}
Anonymous:            16 kB
Swap:                  0 kB
003f7000-003fb000 r--p 001f5000 fe:00 5310431  {exe}
Anonymous:             0 kB
Swap:                 16 kB
003fb000-003ff000 rw-p 001f8000 fe:00 5310431  {exe}
Anonymous:             0 kB
Swap:                  0 kB
0e396000-0e3da000 rw-p 00000000 00:00 0        [heap]
Anonymous:           264 kB
7f0000000000-7f0000001000 r--p 00000000 fe:00 42  /usr/lib/other.so
Anonymous:             0 kB
"
        );
        assert_eq!(
            clean_read_only_mappings(&smaps, exe),
            vec![(0x200000, 0x281000), (0x281000, 0x3f7000)]
        );
    }

    #[test]
    fn trimming_keeps_the_process_running() {
        // This test process keeps running (and allocating) after its own pages were dropped.
        trim();
        let v: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        trim();
        assert_eq!(v[999], "999");
    }
}
