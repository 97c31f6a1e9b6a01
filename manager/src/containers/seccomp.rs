//! docker's default seccomp profile (moby `profiles/seccomp/default.json`, generated from
//! `default_linux.go`), as data, and its rendering into an OCI runtime-spec `linux.seccomp` object.
//!
//! Why: a container started by drayd must see the same system calls as the same container started
//! by dockerd. Images and the programs in them are tested under docker's profile, so a stricter one
//! breaks them and a looser one gives away what docker's profile keeps from containers (mounting,
//! loading kernel modules, kexec, keyrings, new namespaces without `CAP_SYS_ADMIN`, ...).
//!
//! The profile is an allow list: every system call not named by a rule fails with `EPERM`. Some
//! rules only apply to some containers; like dockerd, [`default_profile`] resolves them when the
//! spec is generated, so the rendered object holds only plain OCI rules:
//!
//! - capability conditions: a rule that *includes* capabilities applies when the container has all
//!   of them; a rule that *excludes* capabilities is dropped when the container has any of them
//!   (moby compares against the spec's bounding set);
//! - architecture conditions: the same, against the host architecture, spelled the way moby spells
//!   it (Go's `GOARCH` through its `goToNative` table: "amd64", "arm64", "s390x", ...);
//! - kernel conditions (`minKernel`): moby checks the running kernel; drayd does not and treats
//!   them as met (the only one allows `ptrace` from Linux 4.8 on; see `Rule::min_kernel`).
//!
//! The table follows moby's rule order, which is also the order of the rendered `syscalls`.

use serde_json::{json, Map, Value};

/// docker's default capability set (moby `oci/caps/defaults.go`, same order): what a container
/// gets when neither `--cap-add` nor `--cap-drop` nor `--privileged` is given.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// `EPERM`: what a system call outside the allow list returns.
const EPERM: u32 = 1;
/// `ENOSYS`: what `clone3` returns without `CAP_SYS_ADMIN`, so that C libraries fall back to
/// `clone`, whose flags the profile can inspect (`clone3` takes them in memory, out of reach of a
/// seccomp filter).
const ENOSYS: u32 = 38;
/// `AF_VSOCK`: the only address family `socket` may not create.
const AF_VSOCK: u64 = 40;
/// The namespace flags of `clone`: `CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
/// CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP`. Without `CAP_SYS_ADMIN`, `clone` is allowed only
/// when none of them is set (`flags & mask == 0`).
const CLONE_NAMESPACE_FLAGS: u64 = 0x0002_0000 // CLONE_NEWNS
    | 0x0400_0000 // CLONE_NEWUTS
    | 0x0800_0000 // CLONE_NEWIPC
    | 0x1000_0000 // CLONE_NEWUSER
    | 0x2000_0000 // CLONE_NEWPID
    | 0x4000_0000 // CLONE_NEWNET
    | 0x0200_0000; // CLONE_NEWCGROUP

/// moby's `archMap`: for a native architecture, the seccomp architectures the filter covers (the
/// native one first, then the compatibility ABIs its kernel also runs). An architecture that is not
/// listed gets no `architectures` at all, which lets the runtime use the native one only.
const ARCH_MAP: &[(&str, &[&str])] = &[
    ("amd64", &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
    ("arm64", &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
    ("mips64", &["SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"]),
    (
        "mips64n32",
        &["SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"],
    ),
    (
        "mipsel64",
        &["SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"],
    ),
    (
        "mipsel64n32",
        &["SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"],
    ),
    ("s390x", &["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]),
    ("riscv64", &["SCMP_ARCH_RISCV64"]),
];

/// What a rule does to the system calls it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// `SCMP_ACT_ALLOW`.
    Allow,
    /// `SCMP_ACT_ERRNO` with this `errnoRet`.
    Errno(u32),
}

/// A comparison on one argument of the system call (OCI `LinuxSeccompArg`).
#[derive(Clone, Copy, Debug)]
struct Arg {
    index: u32,
    value: u64,
    value_two: u64,
    /// `SCMP_CMP_NE`, `SCMP_CMP_EQ`, `SCMP_CMP_MASKED_EQ`, ...
    op: &'static str,
}

/// One rule of the profile, with moby's `includes` / `excludes` conditions.
#[derive(Clone, Copy, Debug)]
struct Rule {
    names: &'static [&'static str],
    action: Action,
    /// All must hold (libseccomp ANDs the comparisons of one rule).
    args: &'static [Arg],
    /// The rule applies only if the container has every one of these capabilities.
    include_caps: &'static [&'static str],
    /// The rule applies only on one of these architectures (moby's spelling).
    include_arches: &'static [&'static str],
    /// The rule is dropped if the container has any of these capabilities.
    exclude_caps: &'static [&'static str],
    /// The rule is dropped on these architectures.
    exclude_arches: &'static [&'static str],
    /// moby applies the rule only on kernels at least this recent. drayd skips that check and
    /// treats every such rule as applying, i.e. assumes a kernel at least as recent as any version
    /// here. The only one is 4.8 (2016), for `ptrace` and friends: before 4.8 a tracer could change
    /// a system call after seccomp had checked it, so on such a kernel this profile lets a
    /// container's `ptrace` bypass seccomp where docker's would not.
    min_kernel: Option<(u32, u32)>,
}

/// A rule that allows its system calls unconditionally; the table overrides fields of it.
const ALLOW: Rule = Rule {
    names: &[],
    action: Action::Allow,
    args: &[],
    include_caps: &[],
    include_arches: &[],
    exclude_caps: &[],
    exclude_arches: &[],
    min_kernel: None,
};

/// Allows `personality` when its only argument, the persona, compares with `args`.
const fn personality(args: &'static [Arg]) -> Rule {
    Rule {
        names: &["personality"],
        args,
        ..ALLOW
    }
}

/// `arg0 == persona`.
macro_rules! persona {
    ($persona:expr) => {
        &[Arg {
            index: 0,
            value: $persona,
            value_two: 0,
            op: "SCMP_CMP_EQ",
        }]
    };
}

/// The personas a container may switch to: plain Linux, with `UNAME26` (report a 2.6 kernel),
/// 32-bit (`PER_LINUX32`, for `linux32`/`setarch`), both, and `0xffffffff` (query only).
const PER_LINUX: u64 = 0x0;
const UNAME26: u64 = 0x0008;
const PER_LINUX32: u64 = 0x20000;
const PER_LINUX32_UNAME26: u64 = 0x20008;
const PER_QUERY: u64 = 0xffff_ffff;

/// The profile, in moby's order.
const RULES: &[Rule] = &[
    // Everything a container may call whatever its capabilities and architecture. Names the host
    // architecture does not have are harmless: the runtime skips them.
    Rule {
        names: &[
            "accept",
            "accept4",
            "access",
            "adjtimex",
            "alarm",
            "bind",
            "brk",
            "capget",
            "capset",
            "chdir",
            "chmod",
            "chown",
            "chown32",
            "clock_adjtime",
            "clock_adjtime64",
            "clock_getres",
            "clock_getres_time64",
            "clock_gettime",
            "clock_gettime64",
            "clock_nanosleep",
            "clock_nanosleep_time64",
            "close",
            "close_range",
            "connect",
            "copy_file_range",
            "creat",
            "dup",
            "dup2",
            "dup3",
            "epoll_create",
            "epoll_create1",
            "epoll_ctl",
            "epoll_ctl_old",
            "epoll_pwait",
            "epoll_pwait2",
            "epoll_wait",
            "epoll_wait_old",
            "eventfd",
            "eventfd2",
            "execve",
            "execveat",
            "exit",
            "exit_group",
            "faccessat",
            "faccessat2",
            "fadvise64",
            "fadvise64_64",
            "fallocate",
            "fanotify_mark",
            "fchdir",
            "fchmod",
            "fchmodat",
            "fchown",
            "fchown32",
            "fchownat",
            "fcntl",
            "fcntl64",
            "fdatasync",
            "fgetxattr",
            "flistxattr",
            "flock",
            "fork",
            "fremovexattr",
            "fsetxattr",
            "fstat",
            "fstat64",
            "fstatat64",
            "fstatfs",
            "fstatfs64",
            "fsync",
            "ftruncate",
            "ftruncate64",
            "futex",
            "futex_time64",
            "futex_waitv",
            "futimesat",
            "getcpu",
            "getcwd",
            "getdents",
            "getdents64",
            "getegid",
            "getegid32",
            "geteuid",
            "geteuid32",
            "getgid",
            "getgid32",
            "getgroups",
            "getgroups32",
            "getitimer",
            "getpeername",
            "getpgid",
            "getpgrp",
            "getpid",
            "getppid",
            "getpriority",
            "getrandom",
            "getresgid",
            "getresgid32",
            "getresuid",
            "getresuid32",
            "getrlimit",
            "get_robust_list",
            "getrusage",
            "getsid",
            "getsockname",
            "getsockopt",
            "get_thread_area",
            "gettid",
            "gettimeofday",
            "getuid",
            "getuid32",
            "getxattr",
            "inotify_add_watch",
            "inotify_init",
            "inotify_init1",
            "inotify_rm_watch",
            "io_cancel",
            "ioctl",
            "io_destroy",
            "io_getevents",
            "io_pgetevents",
            "io_pgetevents_time64",
            "ioprio_get",
            "ioprio_set",
            "io_setup",
            "io_submit",
            "io_uring_enter",
            "io_uring_register",
            "io_uring_setup",
            "ipc",
            "kill",
            "landlock_add_rule",
            "landlock_create_ruleset",
            "landlock_restrict_self",
            "lchown",
            "lchown32",
            "lgetxattr",
            "link",
            "linkat",
            "listen",
            "listxattr",
            "llistxattr",
            "_llseek",
            "lremovexattr",
            "lseek",
            "lsetxattr",
            "lstat",
            "lstat64",
            "madvise",
            "membarrier",
            "memfd_create",
            "memfd_secret",
            "mincore",
            "mkdir",
            "mkdirat",
            "mknod",
            "mknodat",
            "mlock",
            "mlock2",
            "mlockall",
            "mmap",
            "mmap2",
            "mprotect",
            "mq_getsetattr",
            "mq_notify",
            "mq_open",
            "mq_timedreceive",
            "mq_timedreceive_time64",
            "mq_timedsend",
            "mq_timedsend_time64",
            "mq_unlink",
            "mremap",
            "msgctl",
            "msgget",
            "msgrcv",
            "msgsnd",
            "msync",
            "munlock",
            "munlockall",
            "munmap",
            "name_to_handle_at",
            "nanosleep",
            "newfstatat",
            "_newselect",
            "open",
            "openat",
            "openat2",
            "pause",
            "pidfd_open",
            "pidfd_send_signal",
            "pipe",
            "pipe2",
            "pkey_alloc",
            "pkey_free",
            "pkey_mprotect",
            "poll",
            "ppoll",
            "ppoll_time64",
            "prctl",
            "pread64",
            "preadv",
            "preadv2",
            "prlimit64",
            "process_mrelease",
            "pselect6",
            "pselect6_time64",
            "pwrite64",
            "pwritev",
            "pwritev2",
            "read",
            "readahead",
            "readlink",
            "readlinkat",
            "readv",
            "recv",
            "recvfrom",
            "recvmmsg",
            "recvmmsg_time64",
            "recvmsg",
            "remap_file_pages",
            "removexattr",
            "rename",
            "renameat",
            "renameat2",
            "restart_syscall",
            "rmdir",
            "rseq",
            "rt_sigaction",
            "rt_sigpending",
            "rt_sigprocmask",
            "rt_sigqueueinfo",
            "rt_sigreturn",
            "rt_sigsuspend",
            "rt_sigtimedwait",
            "rt_sigtimedwait_time64",
            "rt_tgsigqueueinfo",
            "sched_getaffinity",
            "sched_getattr",
            "sched_getparam",
            "sched_get_priority_max",
            "sched_get_priority_min",
            "sched_getscheduler",
            "sched_rr_get_interval",
            "sched_rr_get_interval_time64",
            "sched_setaffinity",
            "sched_setattr",
            "sched_setparam",
            "sched_setscheduler",
            "sched_yield",
            "seccomp",
            "select",
            "semctl",
            "semget",
            "semop",
            "semtimedop",
            "semtimedop_time64",
            "send",
            "sendfile",
            "sendfile64",
            "sendmmsg",
            "sendmsg",
            "sendto",
            "setfsgid",
            "setfsgid32",
            "setfsuid",
            "setfsuid32",
            "setgid",
            "setgid32",
            "setgroups",
            "setgroups32",
            "setitimer",
            "setpgid",
            "setpriority",
            "setregid",
            "setregid32",
            "setresgid",
            "setresgid32",
            "setresuid",
            "setresuid32",
            "setreuid",
            "setreuid32",
            "setrlimit",
            "set_robust_list",
            "setsid",
            "setsockopt",
            "set_thread_area",
            "set_tid_address",
            "setuid",
            "setuid32",
            "setxattr",
            "shmat",
            "shmctl",
            "shmdt",
            "shmget",
            "shutdown",
            "sigaltstack",
            "signalfd",
            "signalfd4",
            "sigprocmask",
            "sigreturn",
            "socketcall",
            "socketpair",
            "splice",
            "stat",
            "stat64",
            "statfs",
            "statfs64",
            "statx",
            "symlink",
            "symlinkat",
            "sync",
            "sync_file_range",
            "syncfs",
            "sysinfo",
            "tee",
            "tgkill",
            "time",
            "timer_create",
            "timer_delete",
            "timer_getoverrun",
            "timer_gettime",
            "timer_gettime64",
            "timer_settime",
            "timer_settime64",
            "timerfd_create",
            "timerfd_gettime",
            "timerfd_gettime64",
            "timerfd_settime",
            "timerfd_settime64",
            "times",
            "tkill",
            "truncate",
            "truncate64",
            "ugetrlimit",
            "umask",
            "uname",
            "unlink",
            "unlinkat",
            "utime",
            "utimensat",
            "utimensat_time64",
            "utimes",
            "vfork",
            "vmsplice",
            "wait4",
            "waitid",
            "waitpid",
            "write",
            "writev",
        ],
        ..ALLOW
    },
    // Since 4.8 seccomp runs after ptrace changes a call, so ptrace can no longer bypass it.
    Rule {
        names: &["process_vm_readv", "process_vm_writev", "ptrace"],
        min_kernel: Some((4, 8)),
        ..ALLOW
    },
    // Any socket but vsock (a channel to the host or the hypervisor).
    Rule {
        names: &["socket"],
        args: &[Arg {
            index: 0,
            value: AF_VSOCK,
            value_two: 0,
            op: "SCMP_CMP_NE",
        }],
        ..ALLOW
    },
    personality(persona!(PER_LINUX)),
    personality(persona!(UNAME26)),
    personality(persona!(PER_LINUX32)),
    personality(persona!(PER_LINUX32_UNAME26)),
    personality(persona!(PER_QUERY)),
    // Architecture-specific system calls.
    Rule {
        names: &["sync_file_range2", "swapcontext"],
        include_arches: &["ppc64le"],
        ..ALLOW
    },
    Rule {
        names: &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
        include_arches: &["arm", "arm64"],
        ..ALLOW
    },
    Rule {
        names: &["arch_prctl"],
        include_arches: &["amd64", "x32"],
        ..ALLOW
    },
    Rule {
        names: &["modify_ldt"],
        include_arches: &["amd64", "x32", "x86"],
        ..ALLOW
    },
    Rule {
        names: &["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"],
        include_arches: &["s390", "s390x"],
        ..ALLOW
    },
    Rule {
        names: &["riscv_flush_icache"],
        include_arches: &["riscv64"],
        ..ALLOW
    },
    // Capability-gated system calls.
    Rule {
        names: &["open_by_handle_at"],
        include_caps: &["CAP_DAC_READ_SEARCH"],
        ..ALLOW
    },
    Rule {
        names: &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
        include_caps: &["CAP_SYS_ADMIN"],
        ..ALLOW
    },
    // Without CAP_SYS_ADMIN: clone, but no new namespaces. The flags are clone's first argument...
    Rule {
        names: &["clone"],
        args: &[Arg {
            index: 0,
            value: CLONE_NAMESPACE_FLAGS,
            value_two: 0,
            op: "SCMP_CMP_MASKED_EQ",
        }],
        exclude_caps: &["CAP_SYS_ADMIN"],
        exclude_arches: &["s390", "s390x"],
        ..ALLOW
    },
    // ... except on s390, whose clone takes the stack first and the flags second.
    Rule {
        names: &["clone"],
        args: &[Arg {
            index: 1,
            value: CLONE_NAMESPACE_FLAGS,
            value_two: 0,
            op: "SCMP_CMP_MASKED_EQ",
        }],
        include_arches: &["s390", "s390x"],
        exclude_caps: &["CAP_SYS_ADMIN"],
        ..ALLOW
    },
    // Without CAP_SYS_ADMIN: clone3 is "not implemented", so callers fall back to clone.
    Rule {
        names: &["clone3"],
        action: Action::Errno(ENOSYS),
        exclude_caps: &["CAP_SYS_ADMIN"],
        ..ALLOW
    },
    Rule {
        names: &["reboot"],
        include_caps: &["CAP_SYS_BOOT"],
        ..ALLOW
    },
    Rule {
        names: &["chroot"],
        include_caps: &["CAP_SYS_CHROOT"],
        ..ALLOW
    },
    Rule {
        names: &["delete_module", "init_module", "finit_module"],
        include_caps: &["CAP_SYS_MODULE"],
        ..ALLOW
    },
    Rule {
        names: &["acct"],
        include_caps: &["CAP_SYS_PACCT"],
        ..ALLOW
    },
    Rule {
        names: &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
        include_caps: &["CAP_SYS_PTRACE"],
        ..ALLOW
    },
    Rule {
        names: &["iopl", "ioperm"],
        include_caps: &["CAP_SYS_RAWIO"],
        ..ALLOW
    },
    Rule {
        names: &["settimeofday", "stime", "clock_settime", "clock_settime64"],
        include_caps: &["CAP_SYS_TIME"],
        ..ALLOW
    },
    Rule {
        names: &["vhangup"],
        include_caps: &["CAP_SYS_TTY_CONFIG"],
        ..ALLOW
    },
    Rule {
        names: &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
        include_caps: &["CAP_SYS_NICE"],
        ..ALLOW
    },
    Rule {
        names: &["syslog"],
        include_caps: &["CAP_SYSLOG"],
        ..ALLOW
    },
    Rule {
        names: &["bpf"],
        include_caps: &["CAP_BPF"],
        ..ALLOW
    },
    Rule {
        names: &["perf_event_open"],
        include_caps: &["CAP_PERFMON"],
        ..ALLOW
    },
];

/// moby's name for an architecture: what its rules' `arches` conditions and its `archMap` use
/// (Go's `GOARCH` through moby's `goToNative`). Takes Rust's `std::env::consts::ARCH` names, and
/// moby's own names too. Rust's `ARCH` does not tell byte orders apart ("mips64", "powerpc64"), so
/// for those the byte order drayd was built for decides. `None` for an architecture moby does not
/// know: then no `arches` condition matches and the profile names no architectures.
fn native_arch(arch: &str) -> Option<&'static str> {
    let little = cfg!(target_endian = "little");
    let native = match arch {
        "x86_64" | "amd64" => "amd64",
        "x86" | "i386" | "i586" | "i686" | "386" => "x86",
        "arm" => "arm",
        "aarch64" | "arm64" => "arm64",
        "mips" if little => "mipsel",
        "mipsel" | "mipsle" => "mipsel",
        "mips64" if little => "mipsel64",
        "mips64" => "mips64",
        "mips64el" | "mipsel64" | "mips64le" => "mipsel64",
        "mips64n32" | "mips64p32" => "mips64n32",
        "mipsel64n32" | "mips64eln32" | "mips64p32le" => "mipsel64n32",
        "powerpc" | "ppc" => "ppc",
        "powerpc64" if little => "ppc64le",
        "powerpc64" | "ppc64" => "ppc64",
        "powerpc64le" | "ppc64le" => "ppc64le",
        "s390" => "s390",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        _ => return None,
    };
    Some(native)
}

/// The seccomp architectures for a native architecture (moby's `archMap`), empty if it has none.
fn architectures(native: Option<&str>) -> &'static [&'static str] {
    ARCH_MAP
        .iter()
        .find(|(name, _)| Some(*name) == native)
        .map(|(_, arches)| *arches)
        .unwrap_or(&[])
}

/// Whether `rule` applies to a container with `caps` on `native`, checked in moby's order
/// (exclusions first, then inclusions).
fn applies(rule: &Rule, caps: &[String], native: Option<&str>) -> bool {
    let has_cap = |cap: &&str| caps.iter().any(|c| c == cap);
    let on_arch = |arches: &[&str]| native.is_some_and(|n| arches.contains(&n));

    if !rule.exclude_arches.is_empty() && on_arch(rule.exclude_arches) {
        return false;
    }
    if rule.exclude_caps.iter().any(has_cap) {
        return false;
    }
    if !rule.include_arches.is_empty() && !on_arch(rule.include_arches) {
        return false;
    }
    if !rule.include_caps.iter().all(has_cap) {
        return false;
    }
    if let Some(version) = rule.min_kernel {
        if !kernel_at_least(version) {
            return false;
        }
    }
    true
}

/// moby's kernel version check, which drayd does not make (see [`Rule::min_kernel`]): every
/// `min_kernel` condition counts as met.
fn kernel_at_least(_version: (u32, u32)) -> bool {
    true
}

/// One rule as an OCI `LinuxSyscall`.
fn render(rule: &Rule) -> Value {
    let mut entry = Map::new();
    entry.insert("names".into(), json!(rule.names));
    match rule.action {
        Action::Allow => {
            entry.insert("action".into(), json!("SCMP_ACT_ALLOW"));
        }
        Action::Errno(errno) => {
            entry.insert("action".into(), json!("SCMP_ACT_ERRNO"));
            entry.insert("errnoRet".into(), json!(errno));
        }
    }
    if !rule.args.is_empty() {
        let args: Vec<Value> = rule
            .args
            .iter()
            .map(|a| json!({"index": a.index, "value": a.value, "valueTwo": a.value_two, "op": a.op}))
            .collect();
        entry.insert("args".into(), Value::Array(args));
    }
    Value::Object(entry)
}

/// Renders the profile for a container with the capabilities `caps` (e.g. "CAP_SYS_ADMIN", the
/// container's effective/bounding set after --cap-add/--cap-drop) on the host architecture
/// `std::env::consts::ARCH` ("x86_64", "aarch64", ...), as the OCI `linux.seccomp` object:
///
/// ```text
/// {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": [...],
///  "syscalls": [{"names": [...], "action": "SCMP_ACT_ALLOW", "args": [...]?, "errnoRet": ..?}, ...]}
/// ```
///
/// Capability names are compared exactly, as moby does ("CAP_SYS_ADMIN", not "SYS_ADMIN" or
/// "cap_sys_admin"). Like dockerd, `architectures` is left out when moby's `archMap` has no entry
/// for the architecture (x86, arm, ppc64le, ...); the runtime then filters the native ABI only.
/// Privileged and `seccomp=unconfined` containers get no profile at all; that is the caller's call.
pub fn default_profile(caps: &[String], arch: &str) -> Value {
    let native = native_arch(arch);

    let mut profile = Map::new();
    profile.insert("defaultAction".into(), json!("SCMP_ACT_ERRNO"));
    profile.insert("defaultErrnoRet".into(), json!(EPERM));
    let arches = architectures(native);
    if !arches.is_empty() {
        profile.insert("architectures".into(), json!(arches));
    }
    let syscalls: Vec<Value> = RULES
        .iter()
        .filter(|rule| applies(rule, caps, native))
        .map(render)
        .collect();
    profile.insert("syscalls".into(), Value::Array(syscalls));
    Value::Object(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docker's default capabilities plus `extra`.
    fn caps(extra: &[&str]) -> Vec<String> {
        DEFAULT_CAPABILITIES
            .iter()
            .chain(extra)
            .map(|c| c.to_string())
            .collect()
    }

    fn syscalls(p: &Value) -> &Vec<Value> {
        p["syscalls"].as_array().expect("syscalls is an array")
    }

    fn names(entry: &Value) -> Vec<&str> {
        entry["names"]
            .as_array()
            .expect("names is an array")
            .iter()
            .map(|n| n.as_str().expect("a name is a string"))
            .collect()
    }

    fn has_args(entry: &Value) -> bool {
        entry
            .get("args")
            .is_some_and(|a| !a.as_array().expect("args is an array").is_empty())
    }

    /// The entries that name `name`.
    fn entries<'a>(p: &'a Value, name: &str) -> Vec<&'a Value> {
        syscalls(p).iter().filter(|e| names(e).contains(&name)).collect()
    }

    /// `name` is allowed whatever its arguments: an SCMP_ACT_ALLOW entry without args lists it.
    fn allowed(p: &Value, name: &str) -> bool {
        entries(p, name)
            .iter()
            .any(|e| e["action"] == "SCMP_ACT_ALLOW" && !has_args(e))
    }

    /// The args of the SCMP_ACT_ALLOW entries that list `name` with conditions on its arguments.
    fn allowed_with_args<'a>(p: &'a Value, name: &str) -> Vec<&'a Value> {
        entries(p, name)
            .into_iter()
            .filter(|e| e["action"] == "SCMP_ACT_ALLOW" && has_args(e))
            .map(|e| &e["args"])
            .collect()
    }

    /// The profile says nothing about `name`: the default action (EPERM) applies.
    fn denied(p: &Value, name: &str) -> bool {
        entries(p, name).is_empty()
    }

    fn arches(p: &Value) -> Vec<&str> {
        p.get("architectures")
            .map(|a| {
                a.as_array()
                    .expect("architectures is an array")
                    .iter()
                    .map(|s| s.as_str().expect("an architecture is a string"))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn default_capabilities_are_dockers() {
        assert_eq!(DEFAULT_CAPABILITIES.len(), 14);
        assert_eq!(DEFAULT_CAPABILITIES[0], "CAP_CHOWN");
        assert_eq!(DEFAULT_CAPABILITIES[13], "CAP_AUDIT_WRITE");
        assert!(!DEFAULT_CAPABILITIES.contains(&"CAP_SYS_ADMIN"));
    }

    #[test]
    fn header_on_x86_64() {
        let p = default_profile(&caps(&[]), "x86_64");
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], 1);
        assert_eq!(arches(&p), ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    }

    #[test]
    fn architectures_per_host() {
        let c = caps(&[]);
        assert_eq!(
            arches(&default_profile(&c, "aarch64")),
            ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
        );
        assert_eq!(
            arches(&default_profile(&c, "s390x")),
            ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]
        );
        assert_eq!(arches(&default_profile(&c, "riscv64")), ["SCMP_ARCH_RISCV64"]);
        assert_eq!(
            arches(&default_profile(&c, "mips64el")),
            ["SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"]
        );
        // No archMap entry: no architectures, as with dockerd; the rules are still there.
        for arch in ["x86", "arm", "powerpc64le", "loongarch64", "sparc64"] {
            let p = default_profile(&c, arch);
            assert!(p.get("architectures").is_none(), "{arch}");
            assert!(allowed(&p, "read"), "{arch}");
        }
    }

    #[test]
    fn default_container_on_x86_64() {
        let p = default_profile(&caps(&[]), "x86_64");
        for name in [
            "read",
            "write",
            "execve",
            "openat",
            "futex",
            "exit_group",
            "arch_prctl",
            "modify_ldt",
        ] {
            assert!(allowed(&p, name), "{name} should be allowed");
        }
        // ptrace's minKernel 4.8 is treated as met; CAP_SYS_CHROOT is a default capability.
        assert!(allowed(&p, "ptrace"));
        assert!(allowed(&p, "process_vm_readv"));
        assert!(allowed(&p, "chroot"));
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "kexec_load",
            "init_module",
            "finit_module",
            "reboot",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "open_by_handle_at",
            "kcmp",
            "settimeofday",
            "iopl",
            "syslog",
            "vhangup",
            "acct",
            "s390_runtime_instr",
            "set_tls",
        ] {
            assert!(denied(&p, name), "{name} should be denied");
        }
    }

    #[test]
    fn clone_without_cap_sys_admin() {
        let p = default_profile(&caps(&[]), "x86_64");
        assert!(!allowed(&p, "clone"));
        let args = allowed_with_args(&p, "clone");
        assert_eq!(args.len(), 1);
        assert_eq!(
            *args[0],
            json!([{"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}])
        );
        let clone3 = entries(&p, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(clone3[0]["errnoRet"], 38);
    }

    #[test]
    fn clone_flags_are_second_on_s390x() {
        let p = default_profile(&caps(&[]), "s390x");
        let args = allowed_with_args(&p, "clone");
        assert_eq!(args.len(), 1);
        assert_eq!(args[0][0]["index"], 1);
        assert_eq!(args[0][0]["value"], 2114060288u64);
        assert!(allowed(&p, "s390_pci_mmio_read"));
        assert!(denied(&p, "arch_prctl"));
    }

    #[test]
    fn cap_sys_admin_opens_mount_and_namespaces() {
        let p = default_profile(&caps(&["CAP_SYS_ADMIN"]), "x86_64");
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "clone",
            "clone3",
            "sethostname",
            "bpf",
        ] {
            assert!(allowed(&p, name), "{name} should be allowed");
        }
        assert!(
            allowed_with_args(&p, "clone").is_empty(),
            "no clone mask with CAP_SYS_ADMIN"
        );
        assert!(entries(&p, "clone3").iter().all(|e| e["action"] == "SCMP_ACT_ALLOW"));
        assert!(denied(&p, "kexec_load"));
        assert!(denied(&p, "init_module"));
    }

    #[test]
    fn other_capabilities() {
        let cases: &[(&str, &[&str])] = &[
            ("CAP_SYS_BOOT", &["reboot"]),
            ("CAP_SYS_MODULE", &["init_module", "finit_module", "delete_module"]),
            ("CAP_SYS_PACCT", &["acct"]),
            ("CAP_SYS_PTRACE", &["kcmp", "pidfd_getfd", "process_madvise"]),
            ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
            ("CAP_SYS_TIME", &["settimeofday", "clock_settime"]),
            ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
            ("CAP_SYS_NICE", &["mbind", "set_mempolicy"]),
            ("CAP_SYSLOG", &["syslog"]),
            ("CAP_BPF", &["bpf"]),
            ("CAP_PERFMON", &["perf_event_open"]),
            ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
        ];
        for (cap, names) in cases {
            let without = default_profile(&caps(&[]), "x86_64");
            let with = default_profile(&caps(&[*cap]), "x86_64");
            for name in *names {
                assert!(denied(&without, name), "{name} without {cap}");
                assert!(allowed(&with, name), "{name} with {cap}");
            }
            // None of these lifts the clone mask.
            assert_eq!(allowed_with_args(&with, "clone").len(), 1, "{cap}");
        }
        // Dropping CAP_SYS_CHROOT takes chroot away.
        let no_chroot: Vec<String> = caps(&[]).into_iter().filter(|c| c != "CAP_SYS_CHROOT").collect();
        assert!(denied(&default_profile(&no_chroot, "x86_64"), "chroot"));
    }

    #[test]
    fn aarch64_has_arm_calls_and_no_x86_ones() {
        let p = default_profile(&caps(&[]), "aarch64");
        assert!(denied(&p, "arch_prctl"));
        assert!(denied(&p, "modify_ldt"));
        for name in ["set_tls", "cacheflush", "arm_fadvise64_64", "sync_file_range2", "read"] {
            assert!(allowed(&p, name), "{name}");
        }
        assert_eq!(allowed_with_args(&p, "clone").len(), 1);
    }

    #[test]
    fn socket_denies_only_vsock() {
        let p = default_profile(&caps(&[]), "x86_64");
        assert!(!allowed(&p, "socket"));
        assert_eq!(
            allowed_with_args(&p, "socket"),
            [&json!([{"index": 0, "value": 40, "valueTwo": 0, "op": "SCMP_CMP_NE"}])]
        );
    }

    #[test]
    fn personality_values() {
        let p = default_profile(&caps(&[]), "x86_64");
        assert!(!allowed(&p, "personality"));
        let values: Vec<u64> = allowed_with_args(&p, "personality")
            .iter()
            .map(|args| {
                assert_eq!(args[0]["op"], "SCMP_CMP_EQ");
                assert_eq!(args[0]["index"], 0);
                args[0]["value"].as_u64().expect("a number")
            })
            .collect();
        assert_eq!(values, [0, 8, 0x20000, 0x20008, 0xffff_ffff]);
    }

    #[test]
    fn rules_keep_mobys_order() {
        let p = default_profile(&caps(&[]), "x86_64");
        let firsts: Vec<&str> = syscalls(&p).iter().map(|e| names(e)[0]).collect();
        assert_eq!(
            firsts,
            [
                "accept",
                "process_vm_readv",
                "socket",
                "personality",
                "personality",
                "personality",
                "personality",
                "personality",
                "arch_prctl",
                "modify_ldt",
                "clone",
                "clone3",
                "chroot",
            ]
        );
    }

    #[test]
    fn entries_are_well_formed() {
        let all = caps(&["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_BPF"]);
        for arch in ["x86_64", "aarch64", "s390x"] {
            for p in [default_profile(&caps(&[]), arch), default_profile(&all, arch)] {
                for e in syscalls(&p) {
                    assert!(!names(e).is_empty());
                    let action = e["action"].as_str().expect("action is a string");
                    assert!(action == "SCMP_ACT_ALLOW" || action == "SCMP_ACT_ERRNO");
                    assert_eq!(e.get("errnoRet").is_some(), action == "SCMP_ACT_ERRNO");
                    for a in e.get("args").and_then(Value::as_array).into_iter().flatten() {
                        assert!(a["index"].is_u64() && a["value"].is_u64() && a["valueTwo"].is_u64());
                        assert!(a["op"].as_str().is_some_and(|op| op.starts_with("SCMP_CMP_")));
                    }
                }
            }
        }
    }

    #[test]
    fn unconditional_list_has_no_duplicates() {
        let list = RULES[0].names;
        let mut sorted = list.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), list.len());
        assert!(RULES[0].include_caps.is_empty() && RULES[0].include_arches.is_empty());
        assert!(RULES[0].min_kernel.is_none() && RULES[0].args.is_empty());
    }
}
