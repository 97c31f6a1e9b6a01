//! The device controller (config-linux.md "Device allowlist", `linux.resources.devices`):
//! v1 `devices.allow`/`devices.deny`, or on cgroup v2 an eBPF program of type
//! BPF_PROG_TYPE_CGROUP_DEVICE attached to the container's cgroup.
//!
//! As runc, the rules are the spec's, then the devices
//! every container may use (null, zero, full, random, urandom, tty, console, ptmx, pts, and
//! mknod of anything). The last matching rule wins.

use crate::error::{Context, Error, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, Spec};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One device rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    /// 'a' (all), 'c' or 'b'.
    pub typ: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// Subset of "rwm".
    pub access: String,
}

impl Rule {
    fn new(allow: bool, typ: char, major: Option<u32>, minor: Option<u32>, access: &str) -> Rule {
        Rule {
            allow,
            typ,
            major,
            minor,
            access: access.to_string(),
        }
    }

    /// The v1 text: `c 1:3 rwm`, `a *:* rwm`.
    pub fn v1_text(&self) -> String {
        let n = |v: Option<u32>| v.map_or("*".to_string(), |x| x.to_string());
        format!("{} {}:{} {}", self.typ, n(self.major), n(self.minor), self.access)
    }
}

fn from_cgroup(d: &LinuxDeviceCgroup) -> Result<Rule> {
    let typ = match d.typ() {
        None | Some(LinuxDeviceType::A) => 'a',
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
        Some(LinuxDeviceType::B) => 'b',
        Some(LinuxDeviceType::P) => {
            return Err(Error::msg("device rule of type 'p' is not valid for the device cgroup"))
        }
    };
    // runc takes access strings as given, and its own tests use "rwa": letters other than
    // r, w and m name no access the kernel knows, and are dropped.
    let access: String = match d.access() {
        None => "rwm".into(),
        Some(a) => a.chars().filter(|c| "rwm".contains(*c)).collect(),
    };
    if access.is_empty() {
        return Err(Error::msg(format!(
            "invalid device access {:?}: no r, w or m",
            d.access().as_deref().unwrap_or_default()
        )));
    }
    // -1 (or any negative number) is runc's wildcard, like an absent value. Device numbers
    // are 32 bits (12 for the major, 20 for the minor): anything larger names no device.
    let number = |v: Option<i64>, what: &str| -> Result<Option<u32>> {
        match v.filter(|n| *n >= 0) {
            None => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| Error::msg(format!("device rule {what} {n} is out of range"))),
        }
    };
    Ok(Rule::new(
        d.allow(),
        typ,
        number(d.major(), "major")?,
        number(d.minor(), "minor")?,
        &access,
    ))
}

/// The devices every container may use, appended after the spec's rules (runc's defaults):
/// mknod of any node, the default nodes /dev gets
/// ([`crate::rootfs::devices::DEFAULT_DEVICES`]), /dev/console, the pts and /dev/ptmx.
pub fn default_allowed() -> Vec<Rule> {
    let mut v = vec![
        Rule::new(true, 'c', None, None, "m"),
        Rule::new(true, 'b', None, None, "m"),
    ];
    for (_, major, minor) in crate::rootfs::devices::DEFAULT_DEVICES {
        v.push(Rule::new(true, 'c', Some(major), Some(minor), "rwm"));
    }
    v.extend([
        Rule::new(true, 'c', Some(5), Some(1), "rwm"),
        Rule::new(true, 'c', Some(136), None, "rwm"),
        Rule::new(true, 'c', Some(5), Some(2), "rwm"),
    ]);
    v
}

/// The full rule list for a spec, or None when the spec sets no device rules (no device
/// cgroup restriction, as runc).
pub fn rules(spec: &Spec) -> Result<Option<Vec<Rule>>> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().as_deref())
        .map(rules_from)
        .transpose()
}

/// The spec's rules followed by the defaults. A node of `linux.devices` is not allowed by
/// being created: as in runc 1.1, only a rule grants access to it (runc's own test creates
/// /dev/kmsg under a deny-all list and expects EPERM).
pub fn rules_from(list: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>> {
    let mut out = list.iter().map(from_cgroup).collect::<Result<Vec<_>>>()?;
    out.extend(default_allowed());
    Ok(out)
}

/// Applies the rules to a v1 devices cgroup: deny everything, then replay the rules in order.
/// Each file is opened once: every write(2) to it is one rule.
pub fn apply_v1(dir: &Path, rules: &[Rule]) -> Result<()> {
    use std::io::Write;
    let open = |name: &str| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join(name))
            .ctx(|| format!("opening {}/{name}", dir.display()))
    };
    let mut deny = open("devices.deny")?;
    let mut allow = None;
    deny.write_all(b"a").ctx(|| "denying every device".into())?;
    // A first rule that denies everything (the usual start of a spec's list) repeats that.
    let deny_all = |r: &Rule| !r.allow && r.typ == 'a' && r.major.is_none() && r.minor.is_none() && r.access == "rwm";
    let rest = match rules.first() {
        Some(r) if deny_all(r) => &rules[1..],
        _ => rules,
    };
    for r in rest {
        let f = if r.allow {
            match &mut allow {
                Some(f) => f,
                None => allow.insert(open("devices.allow")?),
            }
        } else {
            &mut deny
        };
        f.write_all(r.v1_text().as_bytes())
            .ctx(|| format!("device rule {:?}", r.v1_text()))?;
    }
    Ok(())
}

// eBPF encoding (include/uapi/linux/bpf.h).
const BPF_LDX_MEM_W: u8 = 0x61;
const BPF_ALU64_MOV_X: u8 = 0xbf;
const BPF_ALU64_MOV_K: u8 = 0xb7;
const BPF_ALU64_AND_K: u8 = 0x57;
const BPF_ALU64_RSH_K: u8 = 0x77;
const BPF_JMP_JNE_K: u8 = 0x55;
const BPF_EXIT: u8 = 0x95;

#[derive(Clone, Copy)]
#[repr(C)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

/// Compiles the rules into a cgroup device program: the context's access type (device type
/// in the low 16 bits, access in the high ones), major and minor are checked against the rules
/// from the last to the first; the first match decides; no match denies.
fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        insn(BPF_LDX_MEM_W, 2, 1, 0, 0), // r2 = ctx->access_type
        insn(BPF_ALU64_MOV_X, 3, 2, 0, 0),
        insn(BPF_ALU64_AND_K, 3, 0, 0, 0xffff), // r3 = device type
        insn(BPF_ALU64_MOV_X, 4, 2, 0, 0),
        insn(BPF_ALU64_RSH_K, 4, 0, 0, 16), // r4 = access
        insn(BPF_LDX_MEM_W, 5, 1, 4, 0),    // r5 = major
        insn(BPF_LDX_MEM_W, 6, 1, 8, 0),    // r6 = minor
    ];
    for r in rules.iter().rev() {
        let mut block: Vec<Insn> = Vec::new();
        // Each check jumps past the rest of the block when the rule does not match; offsets
        // are filled in once the block's length is known.
        let mut checks: Vec<usize> = Vec::new();
        match r.typ {
            'c' => {
                checks.push(block.len());
                block.push(insn(BPF_JMP_JNE_K, 3, 0, 0, 2));
            }
            'b' => {
                checks.push(block.len());
                block.push(insn(BPF_JMP_JNE_K, 3, 0, 0, 1));
            }
            _ => {}
        }
        let acc: i32 = r
            .access
            .chars()
            .map(|c| match c {
                'm' => 1,
                'r' => 2,
                _ => 4,
            })
            .fold(0, |a, b| a | b);
        if acc != 7 {
            block.push(insn(BPF_ALU64_MOV_X, 7, 4, 0, 0));
            block.push(insn(BPF_ALU64_AND_K, 7, 0, 0, !acc & 7));
            checks.push(block.len());
            block.push(insn(BPF_JMP_JNE_K, 7, 0, 0, 0));
        }
        if let Some(m) = r.major {
            checks.push(block.len());
            // The immediate is the number's bit pattern.
            block.push(insn(BPF_JMP_JNE_K, 5, 0, 0, m as i32));
        }
        if let Some(m) = r.minor {
            checks.push(block.len());
            block.push(insn(BPF_JMP_JNE_K, 6, 0, 0, m as i32));
        }
        block.push(insn(BPF_ALU64_MOV_K, 0, 0, 0, i32::from(r.allow)));
        block.push(insn(BPF_EXIT, 0, 0, 0, 0));
        let len = block.len();
        let unconditional = checks.is_empty();
        for i in checks {
            // A program of a few hundred instructions (one block per rule).
            block[i].off = i16::try_from(len - i - 1).unwrap_or(i16::MAX);
        }
        p.extend(block);
        // A rule that matches everything ends the program: the verifier refuses unreachable
        // instructions after it.
        if unconditional {
            return p;
        }
    }
    p.push(insn(BPF_ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(BPF_EXIT, 0, 0, 0, 0));
    p
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<i64> {
    // SAFETY: attr is a zero-initialised 128-byte bpf_attr; the kernel checks the unused tail.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r)
}

const BPF_CGROUP_DEVICE: u32 = 6;

/// The ids of the device programs attached to a cgroup v2 directory (BPF_PROG_QUERY).
fn attached(cg: &std::fs::File) -> Result<Vec<u32>> {
    const BPF_PROG_QUERY: libc::c_long = 16;
    const IDS: u32 = 64;
    let mut ids = [0u32; IDS as usize];
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&crate::sys::fd_u32(cg.as_raw_fd()).to_ne_bytes());
    attr[4..8].copy_from_slice(&BPF_CGROUP_DEVICE.to_ne_bytes());
    attr[16..24].copy_from_slice(&(ids.as_mut_ptr() as u64).to_ne_bytes());
    attr[24..28].copy_from_slice(&IDS.to_ne_bytes());
    bpf(BPF_PROG_QUERY, &mut attr).ctx(|| "listing the device programs".into())?;
    let n = u32::from_ne_bytes([attr[24], attr[25], attr[26], attr[27]]) as usize;
    Ok(ids[..n.min(ids.len())].to_vec())
}

/// Detaches the device program `id` from a cgroup v2 directory.
fn detach(cg: &std::fs::File, id: u32) -> Result<()> {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    const BPF_PROG_DETACH: libc::c_long = 9;
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&id.to_ne_bytes());
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr).ctx(|| format!("opening device program {id}"))?;
    // SAFETY: the kernel returned a new program fd.
    let prog = unsafe { OwnedFd::from_raw_fd(crate::sys::syscall_int(fd).ctx(|| "opening a device program".into())?) };
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&crate::sys::fd_u32(cg.as_raw_fd()).to_ne_bytes());
    attr[4..8].copy_from_slice(&crate::sys::fd_u32(prog.as_raw_fd()).to_ne_bytes());
    attr[8..12].copy_from_slice(&BPF_CGROUP_DEVICE.to_ne_bytes());
    bpf(BPF_PROG_DETACH, &mut attr).ctx(|| format!("detaching device program {id}"))?;
    Ok(())
}

/// Loads the device program and attaches it to a cgroup v2 directory. Programs attached before
/// (an `update`) are detached only once the new one is in place: while both are attached an
/// access must pass both, so no access either of them denies gets through meanwhile.
pub fn apply_v2(dir: &Path, rules: &[Rule]) -> Result<()> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_ATTACH: libc::c_long = 8;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    const BPF_F_ALLOW_MULTI: u32 = 2;
    let prog = program(rules);
    let license = c"Apache";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_CGROUP_DEVICE.to_ne_bytes());
    let insns = u32::try_from(prog.len()).map_err(|_| Error::msg("too many device rules"))?;
    attr[4..8].copy_from_slice(&insns.to_ne_bytes());
    attr[8..16].copy_from_slice(&(prog.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    let fd = bpf(BPF_PROG_LOAD, &mut attr).ctx(|| "loading the device cgroup eBPF program".into())?;
    // SAFETY: the kernel returned a new program fd.
    let prog_fd =
        unsafe { OwnedFd::from_raw_fd(crate::sys::syscall_int(fd).ctx(|| "loading the device program".into())?) };
    let cg = std::fs::File::open(dir).ctx(|| format!("opening {}", dir.display()))?;
    let old = attached(&cg)?;
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&crate::sys::fd_u32(cg.as_raw_fd()).to_ne_bytes());
    attr[4..8].copy_from_slice(&crate::sys::fd_u32(prog_fd.as_raw_fd()).to_ne_bytes());
    attr[8..12].copy_from_slice(&BPF_CGROUP_DEVICE.to_ne_bytes());
    attr[12..16].copy_from_slice(&BPF_F_ALLOW_MULTI.to_ne_bytes());
    bpf(BPF_PROG_ATTACH, &mut attr).ctx(|| format!("attaching the device program to {}", dir.display()))?;
    for id in old {
        detach(&cg, id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_text_and_program_shape() {
        let r = Rule::new(false, 'a', None, None, "rwm");
        assert_eq!(r.v1_text(), "a *:* rwm");
        assert_eq!(Rule::new(true, 'c', Some(1), Some(3), "rw").v1_text(), "c 1:3 rw");
        let p = program(&[r, Rule::new(true, 'c', Some(1), Some(3), "rw")]);
        // Prologue (7), the 'c 1:3 rw' block (type, 3 for access, major, minor, mov, exit = 8),
        // the deny-all block (mov, exit = 2), which ends the program.
        assert_eq!(p.len(), 7 + 8 + 2);

        // The first check of the c 1:3 block skips its 7 remaining instructions.
        assert_eq!(p[7].off, 7);
    }
}
