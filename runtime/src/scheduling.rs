//! `process.scheduler`, `process.ioPriority`, `linux.memoryPolicy` and `linux.personality`
//! (config.md "Scheduler", "IO Priority"; config-linux.md "Memory policy", "Personality").

use crate::error::{Context, Error, Result};
use oci_spec::runtime::{
    IOPriorityClass, LinuxIOPriority, LinuxMemoryPolicy, LinuxPersonality, LinuxPersonalityDomain, LinuxSchedulerFlag,
    LinuxSchedulerPolicy, MemoryPolicyFlagType, MemoryPolicyModeType, Scheduler,
};

/// `sched_setattr(2)` with the spec's policy, nice, priority, flags and deadline parameters.
/// Applied before capabilities are dropped (raising a priority needs CAP_SYS_NICE).
pub fn apply_scheduler(s: &Scheduler) -> Result<()> {
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
        util_min: u32,
        util_max: u32,
    }
    // The kernel's sched_attr (SCHED_ATTR_SIZE_VER1): 56 bytes.
    const SCHED_ATTR_SIZE: u32 = 56;
    const _: () = assert!(std::mem::size_of::<SchedAttr>() == SCHED_ATTR_SIZE as usize);
    let policy = match s.policy() {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIso => 4,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    };
    let flags = s.flags().iter().flatten().fold(0u64, |a, f| {
        a | match f {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
        }
    });
    let attr = SchedAttr {
        size: SCHED_ATTR_SIZE,
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: u32::try_from(s.priority().unwrap_or(0))
            .map_err(|_| Error::msg(format!("scheduler priority {:?} is negative", s.priority())))?,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        util_min: 0,
        util_max: 0,
    };
    // SAFETY: sched_setattr on ourselves with a valid, sized sched_attr.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| format!("setting the scheduler ({:?})", s.policy()));
    }
    Ok(())
}

/// `ioprio_set(2)` for this process.
pub fn apply_io_priority(p: &LinuxIOPriority) -> Result<()> {
    let class = match p.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    if !(0..=7).contains(&p.priority()) {
        return Err(Error::msg(format!(
            "ioPriority.priority {} is outside 0..7",
            p.priority()
        )));
    }
    // 0..=7, checked above.
    let value = (class << 13) | i32::try_from(p.priority()).unwrap_or(0);
    // SAFETY: ioprio_set with integer arguments (IOPRIO_WHO_PROCESS = 1, 0 = ourselves).
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, value) };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "setting the I/O priority".into());
    }
    Ok(())
}

/// Parses a node list like `0-3,5` into a bitmask of 64-bit words.
pub fn parse_nodes(s: &str) -> Result<Vec<u64>> {
    let mut mask: Vec<u64> = Vec::new();
    let bad = || Error::msg(format!("invalid memoryPolicy.nodes {s:?}"));
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (
                a.parse::<usize>().map_err(|_| bad())?,
                b.parse::<usize>().map_err(|_| bad())?,
            ),
            None => {
                let n = part.parse::<usize>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if a > b || b >= 4096 {
            return Err(bad());
        }
        for n in a..=b {
            if mask.len() <= n / 64 {
                mask.resize(n / 64 + 1, 0);
            }
            mask[n / 64] |= 1 << (n % 64);
        }
    }
    Ok(mask)
}

/// `set_mempolicy(2)`: the memory policy the container's processes inherit.
pub fn apply_memory_policy(m: &LinuxMemoryPolicy) -> Result<()> {
    let mode: i32 = match m.mode() {
        MemoryPolicyModeType::MpolDefault => 0,
        MemoryPolicyModeType::MpolPreferred => 1,
        MemoryPolicyModeType::MpolBind => 2,
        MemoryPolicyModeType::MpolInterleave => 3,
        MemoryPolicyModeType::MpolLocal => 4,
        MemoryPolicyModeType::MpolPreferredMany => 5,
        MemoryPolicyModeType::MpolWeightedInterleave => 6,
    };
    let flags = m.flags().iter().flatten().fold(0i32, |a, f| {
        a | match f {
            MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
            MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
            MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
        }
    });
    let mask = parse_nodes(m.nodes().as_deref().unwrap_or(""))?;
    let (ptr, maxnode) = if mask.is_empty() {
        (std::ptr::null(), 0)
    } else {
        (mask.as_ptr(), mask.len() * 64 + 1)
    };
    // SAFETY: set_mempolicy with a node mask of `maxnode - 1` valid bits (or null).
    let r = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode | flags, ptr, maxnode) };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| format!("setting the memory policy {:?}", m.mode()));
    }
    Ok(())
}

/// `personality(2)`: LINUX or LINUX32 (flags are not defined by the spec and are refused).
pub fn apply_personality(p: &LinuxPersonality) -> Result<()> {
    if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(Error::msg(format!(
            "personality flags {:?} are not supported",
            p.flags()
        )));
    }
    let persona: libc::c_ulong = match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    // SAFETY: personality with an integer argument.
    if unsafe { libc::personality(persona) } == -1 {
        return Err(std::io::Error::last_os_error()).ctx(|| "setting the personality".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lists() {
        assert_eq!(parse_nodes("0").unwrap(), vec![1]);
        assert_eq!(parse_nodes("0-2,5").unwrap(), vec![0b100111]);
        assert_eq!(parse_nodes("64").unwrap(), vec![0, 1]);
        assert!(parse_nodes("3-1").is_err());
        assert!(parse_nodes("x").is_err());
        assert!(parse_nodes("").unwrap().is_empty());
    }
}
