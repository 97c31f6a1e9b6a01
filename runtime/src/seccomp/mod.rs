//! `linux.seccomp` (config-linux.md "Seccomp"), compiled with `seccompiler`.
//!
//! seccompiler builds one filter per match action, so an OCI profile becomes a small stack of
//! filters, relying on the kernel's rule that the most restrictive result of all installed
//! filters wins:
//! - for every action A other than the default and ALLOW: a filter returning A for A's rules
//!   and ALLOW otherwise;
//! - unless the default is ALLOW: a filter returning ALLOW for every rule whose action is not
//!   the default, and the default action otherwise.
//!
//! A syscall that matches a rule gets that rule's action; any other gets the default.
//! `SCMP_ACT_NOTIFY`, which seccompiler cannot express, is compiled with a placeholder action
//! whose return instructions are then rewritten to SECCOMP_RET_USER_NOTIF; that filter is
//! installed with SECCOMP_FILTER_FLAG_NEW_LISTENER and its fd goes to `listenerPath`.
//! Unknown syscall names are skipped with a warning, as runc does.

pub mod syscalls;

use crate::error::{Context, Error, Result};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd};

const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
/// Placeholder for NOTIFY while compiling (a TRACE value no profile would use).
const NOTIFY_PLACEHOLDER: u32 = 0xd7a7;

/// One compiled filter: raw BPF instructions (code, jt, jf, k) and whether it notifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub insns: Vec<(u16, u8, u8, u32)>,
    pub notify: bool,
}

/// A compiled profile: its filters and the SECCOMP_FILTER_FLAG_* flags to install them with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub filters: Vec<Filter>,
    pub flags: u32,
    /// What compiling the profile skipped (unknown calls), repeated whenever it is used.
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl Program {
    /// True if one filter uses SCMP_ACT_NOTIFY.
    pub fn notifies(&self) -> bool {
        self.filters.iter().any(|f| f.notify)
    }
}

/// The system call number of `name` on this architecture.
pub fn syscall_nr(name: &str) -> Option<i64> {
    syscalls::X86_64
        .binary_search_by(|(n, _)| n.cmp(&name))
        .ok()
        .map(|i| syscalls::X86_64[i].1)
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> SeccompAction {
    match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => SeccompAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActErrno => SeccompAction::Errno(errno.unwrap_or(libc::EPERM as u32)),
        LinuxSeccompAction::ScmpActTrace => SeccompAction::Trace(errno.unwrap_or(libc::EPERM as u32)),
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActNotify => SeccompAction::Trace(NOTIFY_PLACEHOLDER),
    }
}

/// The comparison and the value to compare with. OCI's MASKED_EQ has the mask in `value` and
/// the value in `valueTwo`.
fn op(a: &oci_spec::runtime::LinuxSeccompArg) -> (SeccompCmpOp, u64) {
    match a.op() {
        LinuxSeccompOperator::ScmpCmpNe => (SeccompCmpOp::Ne, a.value()),
        LinuxSeccompOperator::ScmpCmpLt => (SeccompCmpOp::Lt, a.value()),
        LinuxSeccompOperator::ScmpCmpLe => (SeccompCmpOp::Le, a.value()),
        LinuxSeccompOperator::ScmpCmpEq => (SeccompCmpOp::Eq, a.value()),
        LinuxSeccompOperator::ScmpCmpGe => (SeccompCmpOp::Ge, a.value()),
        LinuxSeccompOperator::ScmpCmpGt => (SeccompCmpOp::Gt, a.value()),
        LinuxSeccompOperator::ScmpCmpMaskedEq => (SeccompCmpOp::MaskedEq(a.value()), a.value_two().unwrap_or(0)),
    }
}

/// Rules per syscall; `None` matches the syscall whatever its arguments.
type RuleMap = BTreeMap<i64, Option<Vec<SeccompRule>>>;

fn add(map: &mut RuleMap, nr: i64, rules: Option<Vec<SeccompRule>>) {
    match (map.get_mut(&nr), rules) {
        (Some(slot), Some(mut r)) => {
            if let Some(v) = slot.as_mut() {
                v.append(&mut r);
            }
        }
        (Some(slot), None) => *slot = None,
        (None, r) => {
            map.insert(nr, r);
        }
    }
}

fn finish(map: RuleMap) -> BTreeMap<i64, Vec<SeccompRule>> {
    map.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect()
}

/// Compiles a profile. Warnings (unknown syscalls) go to `warn`.
pub fn compile(s: &LinuxSeccomp, warn: &mut Vec<String>) -> Result<Program> {
    // Other architectures in the list (profiles name aarch64, arm, ... for portability, as
    // runc's own tests do) cannot make system calls on an x86-64 kernel: nothing to filter.
    if s.architectures()
        .iter()
        .flatten()
        .any(|a| matches!(a, Arch::ScmpArchX86 | Arch::ScmpArchX32))
    {
        warn.push("seccomp: only native x86-64 system calls are filtered by rule; i386 calls kill the process and x32 calls fail with ENOSYS".into());
    }
    if s.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(Error::msg("seccomp: SCMP_ACT_NOTIFY cannot be the default action"));
    }
    for sc in s.syscalls().iter().flatten() {
        if sc.action() == LinuxSeccompAction::ScmpActNotify && sc.names().iter().any(|n| n == "write") {
            // runc's words: the listener may write to the container's own pipes.
            return Err(Error::msg(
                "seccomp: SCMP_ACT_NOTIFY cannot be used for the write syscall",
            ));
        }
    }
    let default = action(s.default_action(), s.default_errno_ret());
    let mut newest_known: i64 = -1;
    let mut groups: BTreeMap<u32, (SeccompAction, RuleMap)> = BTreeMap::new();
    let mut not_default: RuleMap = BTreeMap::new();
    for sc in s.syscalls().iter().flatten() {
        let act = action(sc.action(), sc.errno_ret());
        let args = sc.args().clone().unwrap_or_default();
        // Conditions of one entry are ANDed; like runc, several conditions on the same
        // argument become separate rules (ORed), which is what libseccomp does.
        let mut idx: Vec<usize> = args.iter().map(|a| a.index()).collect();
        idx.sort_unstable();
        let repeated = idx.windows(2).any(|w| w[0] == w[1]);
        let conds: Vec<SeccompCondition> = args
            .iter()
            .map(|a| {
                if a.index() > 5 {
                    return Err(Error::msg(format!("seccomp argument index {} is above 5", a.index())));
                }
                let (o, value) = op(a);
                // 0..=5, checked above.
                let index = u8::try_from(a.index()).unwrap_or(u8::MAX);
                SeccompCondition::new(index, SeccompCmpArgLen::Qword, o, value)
                    .map_err(|e| Error::msg(format!("seccomp condition: {e}")))
            })
            .collect::<Result<_>>()?;
        let rules: Option<Vec<SeccompRule>> = if conds.is_empty() {
            None
        } else if repeated {
            Some(
                conds
                    .into_iter()
                    .map(|c| SeccompRule::new(vec![c]))
                    .collect::<Result<_, _>>()
                    .map_err(|e| Error::msg(format!("seccomp rule: {e}")))?,
            )
        } else {
            Some(vec![
                SeccompRule::new(conds).map_err(|e| Error::msg(format!("seccomp rule: {e}")))?
            ])
        };
        for name in sc.names() {
            let Some(nr) = syscall_nr(name) else {
                warn.push(format!("seccomp: unknown system call {name:?} skipped"));
                continue;
            };
            newest_known = newest_known.max(nr);
            let key = u32::from(act.clone());
            let g = groups.entry(key).or_insert_with(|| (act.clone(), BTreeMap::new()));
            add(&mut g.1, nr, rules.clone());
            if act != default {
                add(&mut not_default, nr, rules.clone());
            }
        }
    }
    let arch = TargetArch::x86_64;
    let mut filters = Vec::new();
    for (_, (act, map)) in groups {
        if act == default || act == SeccompAction::Allow {
            continue;
        }
        let notify = act == SeccompAction::Trace(NOTIFY_PLACEHOLDER);
        let f = SeccompFilter::new(finish(map), SeccompAction::Allow, act, arch)
            .map_err(|e| Error::msg(format!("seccomp filter: {e}")))?;
        filters.push(to_filter(f, notify)?);
    }
    if default != SeccompAction::Allow {
        let f = SeccompFilter::new(finish(not_default), default.clone(), SeccompAction::Allow, arch)
            .map_err(|e| Error::msg(format!("seccomp filter: {e}")))?;
        let mut f = to_filter(f, false)?;
        if let (true, Ok(newest)) = (
            default != SeccompAction::Errno(libc::ENOSYS as u32),
            u32::try_from(newest_known),
        ) {
            f.insns.splice(0..0, enosys_stub(newest));
        }
        filters.push(f);
    }
    // seccompiler checks the architecture but not the x32 bit of the system call number: x32
    // calls (nr | 0x40000000) would fall through to ALLOW in a deny-list profile. This first
    // filter answers every x32 call with ENOSYS.
    filters.insert(0, x32_guard());
    if filters.iter().filter(|f| f.notify).count() > 1 {
        return Err(Error::msg("seccomp: only one notify filter is possible"));
    }
    let mut flags = 0;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 32,
        };
    }
    let prog = Program {
        filters,
        flags,
        warnings: warn.clone(),
    };
    if prog.notifies() && s.listener_path().is_none() {
        return Err(Error::msg("seccomp: SCMP_ACT_NOTIFY needs a listenerPath"));
    }
    Ok(prog)
}

/// The start of a restrictive default filter: a system call newer than every one the profile
/// names gets ENOSYS instead of the default action, as runc does, so that a C library probing a
/// call the profile's author did not know (clone3, openat2, ...) falls back to an older one
/// instead of failing with EPERM or being killed.
fn enosys_stub(newest: u32) -> [(u16, u8, u8, u32); 5] {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    [
        (0x20, 0, 0, 4),                                 // ld [4]: arch
        (0x15, 0, 3, AUDIT_ARCH_X86_64),                 // jeq x86_64 ? next : the filter
        (0x20, 0, 0, 0),                                 // ld [0]: nr
        (0x25, 0, 1, newest),                            // jgt newest ? next : the filter
        (0x06, 0, 0, 0x0005_0000 | libc::ENOSYS as u32), // ret ERRNO(ENOSYS)
    ]
}

/// `ld arch; jne X86_64 -> allow; ld nr; jge 0x40000000 -> ENOSYS; allow`.
fn x32_guard() -> Filter {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let ret_errno = 0x0005_0000 | libc::ENOSYS as u32;
    Filter {
        insns: vec![
            (0x20, 0, 0, 4),                 // ld [4]: arch
            (0x15, 0, 3, AUDIT_ARCH_X86_64), // jeq x86_64 ? next : allow
            (0x20, 0, 0, 0),                 // ld [0]: nr
            (0x35, 0, 1, 0x4000_0000),       // jge x32 bit ? errno : allow
            (0x06, 0, 0, ret_errno),         // ret ERRNO(ENOSYS)
            (0x06, 0, 0, 0x7fff_0000),       // ret ALLOW
        ],
        notify: false,
    }
}

fn to_filter(f: SeccompFilter, notify: bool) -> Result<Filter> {
    let bpf: BpfProgram = f
        .try_into()
        .map_err(|e: seccompiler::BackendError| Error::msg(format!("seccomp: {e}")))?;
    let placeholder = u32::from(SeccompAction::Trace(NOTIFY_PLACEHOLDER));
    let insns = bpf
        .into_iter()
        .map(|i: sock_filter| {
            let k = if notify && i.code == 0x06 && i.k == placeholder {
                SECCOMP_RET_USER_NOTIF
            } else {
                i.k
            };
            (i.code, i.jt, i.jf, k)
        })
        .collect();
    Ok(Filter { insns, notify })
}

/// Compiles a profile, reusing a cached copy when the same profile was compiled before by
/// this version of dray (the cache lives under the state root).
pub fn compile_cached(s: &LinuxSeccomp, cache_dir: &std::path::Path) -> Result<Program> {
    use std::hash::{Hash, Hasher};
    let text = serde_json::to_string(s).map_err(|e| Error::msg(e.to_string()))?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (crate::VERSION, &text).hash(&mut h);
    let path = cache_dir.join(format!("seccomp-{:016x}.json", h.finish()));
    // runc logs skipped syscalls at debug level: engines send profiles for every arch.
    let log = |p: &Program| {
        for w in &p.warnings {
            tracing::debug!("{w}");
        }
    };
    if let Ok(data) = std::fs::read(&path) {
        if let Ok(p) = serde_json::from_slice::<Program>(&data) {
            log(&p);
            return Ok(p);
        }
    }
    let mut warn = Vec::new();
    let prog = compile(s, &mut warn)?;
    log(&prog);
    if std::fs::create_dir_all(cache_dir).is_ok() {
        // A per-process temporary name: two runtimes may fill the cache at once.
        if let Ok(data) = serde_json::to_vec(&prog) {
            let _ = crate::sys::write_file_atomic(&path, &format!(".tmp{}", std::process::id()), data);
        }
    }
    Ok(prog)
}

/// Installs the filters on this process. Returns the notify fd if a filter notifies.
pub fn install(p: &Program) -> Result<Option<OwnedFd>> {
    const SECCOMP_SET_MODE_FILTER: libc::c_long = 1;
    const NEW_LISTENER: u32 = 8;
    const TSYNC: u32 = 1;
    let mut listener = None;
    for f in &p.filters {
        let insns: Vec<libc::sock_filter> = f
            .insns
            .iter()
            .map(|(code, jt, jf, k)| libc::sock_filter {
                code: *code,
                jt: *jt,
                jf: *jf,
                k: *k,
            })
            .collect();
        let prog = libc::sock_fprog {
            len: u16::try_from(insns.len())
                .map_err(|_| Error::msg("seccomp: the filter is longer than the kernel allows"))?,
            filter: insns.as_ptr() as *mut libc::sock_filter,
        };
        // A listener cannot be combined with TSYNC (and the init is single-threaded anyway);
        // WAIT_KILLABLE_RECV is only valid with a listener.
        const WAIT_KILLABLE_RECV: u32 = 32;
        let flags = if f.notify {
            (p.flags & !TSYNC) | NEW_LISTENER
        } else {
            p.flags & !WAIT_KILLABLE_RECV
        };
        // SAFETY: seccomp with a valid sock_fprog whose instructions outlive the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error()).ctx(|| "installing the seccomp filter".into());
        }
        if f.notify {
            // SAFETY: with NEW_LISTENER the kernel returns a new fd.
            listener =
                Some(unsafe { OwnedFd::from_raw_fd(crate::sys::syscall_int(r).ctx(|| "seccomp listener".into())?) });
        }
    }
    Ok(listener)
}

/// Sends the notify fd to the seccomp agent at `listenerPath`, with the container process
/// state, as runc does (config-linux.md "The Container Process State").
pub fn send_to_listener(
    path: &std::path::Path,
    metadata: Option<&str>,
    pid: i32,
    state: &serde_json::Value,
    fd: &OwnedFd,
) -> Result<()> {
    use std::os::fd::AsRawFd;
    let sock = std::os::unix::net::UnixStream::connect(path)
        .ctx(|| format!("connecting to the seccomp agent {}", path.display()))?;
    let msg = serde_json::json!({
        "ociVersion": crate::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": metadata.unwrap_or(""),
        "state": state
    });
    crate::console::send_fd(sock.as_raw_fd(), &msg.to_string(), fd.as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_table_lookup() {
        assert_eq!(syscall_nr("read"), Some(0));
        assert_eq!(syscall_nr("unshare"), Some(272));
        assert_eq!(syscall_nr("nosuchcall"), None);
        assert!(
            syscalls::X86_64.windows(2).all(|w| w[0].0 < w[1].0),
            "table must be sorted"
        );
    }

    #[test]
    fn a_profile_becomes_a_filter_stack() {
        let s: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["read", "write", "nosuchcall"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["kill"], "action": "SCMP_ACT_TRAP"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
            ]
        }))
        .unwrap();
        let mut warn = Vec::new();
        let p = compile(&s, &mut warn).unwrap();
        assert_eq!(warn.len(), 1, "{warn:?}");
        // x32 guard + TRAP filter + default filter.
        assert_eq!(p.filters.len(), 3);
        assert!(!p.notifies());
    }
}
