//! `--user` / the image's `User` resolved through the image's `/etc/passwd` and `/etc/group`,
//! as docker does (moby `oci.GetUser`, runc's `user` package): `name`, `uid`, `name:group`,
//! `uid:gid`; supplementary groups from `/etc/group`; HOME from passwd.

use crate::error::{Error, Result};

/// The process's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// From passwd; "/" when the user has no entry (docker's default).
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 || l.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn groups(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || l.starts_with('#') {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f[3].split(',').filter(|m| !m.is_empty()).collect(),
        })
    })
}

/// Resolves `spec` (empty: root) with the image's passwd and group files (`None`: absent).
pub fn resolve(spec: &str, passwd_text: Option<&str>, group_text: Option<&str>) -> Result<Ids> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let pw = passwd_text.unwrap_or("");
    let gr = group_text.unwrap_or("");
    let entry = match u.parse::<u32>() {
        Ok(uid) => passwd(pw).find(|e| e.uid == uid),
        Err(_) => Some(passwd(pw).find(|e| e.name == u).ok_or_else(|| {
            Error::InvalidArgument(format!("unable to find user {u}: no matching entries in passwd file"))
        })?),
    };
    let uid = match &entry {
        Some(e) => e.uid,
        None => u
            .parse::<u32>()
            .map_err(|_| Error::InvalidArgument(format!("invalid user {u}")))?,
    };
    let name = entry.as_ref().map(|e| e.name).unwrap_or("");
    let home = entry
        .as_ref()
        .map(|e| e.home)
        .filter(|h| !h.is_empty())
        .unwrap_or("/")
        .to_string();
    let gid = match g {
        Some(g) if !g.is_empty() => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups(gr).find(|e| e.name == g).map(|e| e.gid).ok_or_else(|| {
                Error::InvalidArgument(format!("unable to find group {g}: no matching entries in group file"))
            })?,
        },
        _ => entry.as_ref().map(|e| e.gid).unwrap_or(0),
    };
    // Supplementary groups: those listing the user by name (only when no group was forced,
    // as runc's GetExecUser does).
    let mut additional_gids = Vec::new();
    if g.is_none() && !name.is_empty() {
        for e in groups(gr).filter(|e| e.members.contains(&name)) {
            if e.gid != gid && !additional_gids.contains(&e.gid) {
                additional_gids.push(e.gid);
            }
        }
    }
    Ok(Ids {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str =
        "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n";
    const GR: &str = "root:x:0:\nwww:x:33:\nstaff:x:50:bob,alice\nbob:x:1000:\naudio:x:29:bob\n";

    #[test]
    fn names_and_numbers() {
        let r = resolve("", Some(PW), Some(GR)).unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (0, 0, "/root"));
        let b = resolve("bob", Some(PW), Some(GR)).unwrap();
        assert_eq!((b.uid, b.gid), (1000, 1000));
        assert_eq!(b.additional_gids, vec![50, 29]);
        assert_eq!(b.home, "/home/bob");
        let n = resolve("4242", Some(PW), Some(GR)).unwrap();
        assert_eq!((n.uid, n.gid, n.home.as_str()), (4242, 0, "/"));
        let w = resolve("www:staff", Some(PW), Some(GR)).unwrap();
        assert_eq!((w.uid, w.gid), (33, 50));
        assert!(w.additional_gids.is_empty());
        let x = resolve("1000:7", None, None).unwrap();
        assert_eq!((x.uid, x.gid), (1000, 7));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(resolve("nobody", Some(PW), Some(GR))
            .unwrap_err()
            .to_string()
            .contains("unable to find user nobody"));
        assert!(resolve("bob:nogroup", Some(PW), Some(GR)).is_err());
        assert!(resolve("bob", None, None).is_err());
    }
}
