//! The exec trampoline: the container's init never execs the user's program while its own
//! executable is the host's `dray` binary.
//!
//! CVE-2019-5736: if the init (whose /proc/self/exe is the host runtime binary) execs a
//! container file starting with `#!/proc/self/exe`, the kernel starts the *host binary* as a
//! container process, and the container can open it through /proc/PID/exe and overwrite it
//! once it exits. runc's fix copies its ~10 MB binary into a sealed memfd and re-executes it on
//! every command. dray instead execs a 160-byte static ELF from a sealed memfd, which then
//! execs the user's program: the only executable the container can ever reach through
//! /proc/PID/exe is that per-container sealed copy of the trampoline. Before that point the
//! init is non-dumpable, so /proc/PID/exe of the init cannot be opened by container processes.
//!
//! Trampoline contract: argv = [path, argv0, argv1, ...]; it calls
//! `execve(argv[0], &argv[1], envp)` and exits 127 if that fails (or if argc < 2).

use crate::error::{Context, Error, Result};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// x86-64 machine code of the trampoline (see module docs).
#[cfg(target_arch = "x86_64")]
const CODE: &[u8] = &[
    0x48, 0x8b, 0x0c, 0x24, // mov rcx, [rsp]            ; argc
    0x48, 0x83, 0xf9, 0x02, // cmp rcx, 2
    0x72, 0x16, // jb fail
    0x48, 0x8b, 0x7c, 0x24, 0x08, // mov rdi, [rsp+8]   ; path = argv[0]
    0x48, 0x8d, 0x74, 0x24, 0x10, // lea rsi, [rsp+16]  ; &argv[1]
    0x48, 0x8d, 0x54, 0xcc, 0x10, // lea rdx, [rsp+rcx*8+16] ; envp
    0xb8, 0x3b, 0x00, 0x00, 0x00, // mov eax, 59 (execve)
    0x0f, 0x05, // syscall
    // fail:
    0xbf, 0x7f, 0x00, 0x00, 0x00, // mov edi, 127
    0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231 (exit_group)
    0x0f, 0x05, // syscall
];
#[cfg(target_arch = "x86_64")]
const MACHINE: u16 = 0x3e;

/// Builds the static ELF image: ELF header, one PT_LOAD program header, code.
#[cfg(target_arch = "x86_64")]
pub fn elf_image() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const HDR: u64 = 64 + 56;
    let total = HDR + CODE.len() as u64;
    let mut v = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    v.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    v.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    v.extend_from_slice(&MACHINE.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    v.extend_from_slice(&(BASE + HDR).to_le_bytes()); // e_entry
    v.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    v.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    v.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    v.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    v.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    v.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    v.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    v.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    v.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    v.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    v.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    v.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    v.extend_from_slice(&total.to_le_bytes()); // p_filesz
    v.extend_from_slice(&total.to_le_bytes()); // p_memsz
    v.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    v.extend_from_slice(CODE);
    v
}

/// A sealed memfd holding the trampoline. Architectures without one are refused rather than
/// run unprotected.
pub fn create() -> Result<Option<OwnedFd>> {
    #[cfg(target_arch = "x86_64")]
    {
        const MFD_EXEC: libc::c_uint = 0x10;
        let name = c"dray-exec";
        let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        // SAFETY: memfd_create with a valid C string; MFD_EXEC is refused (EINVAL) by kernels
        // before 6.3, where memfds are executable anyway, so retry without it.
        let mut fd = unsafe { libc::memfd_create(name.as_ptr(), flags | MFD_EXEC) };
        if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EACCES) {
            return Err(Error::msg(
                "vm.memfd_noexec forbids executable memfds, which dray needs for its exec trampoline (CVE-2019-5736 protection)",
            ));
        }
        if fd < 0 {
            // SAFETY: as above.
            fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
        }
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).ctx(|| "memfd_create for the exec trampoline".into());
        }
        // SAFETY: fd is a new fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let img = elf_image();
        let n = nix::unistd::write(&fd, &img).ctx(|| "writing the exec trampoline".into())?;
        if n != img.len() {
            return Err(Error::msg("short write of the exec trampoline"));
        }
        let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        // SAFETY: fcntl on an fd we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(std::io::Error::last_os_error()).ctx(|| "sealing the exec trampoline".into());
        }
        Ok(Some(fd))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Err(Error::msg("dray has no exec trampoline for this architecture yet, and will not run containers without its CVE-2019-5736 protection"))
    }
}

/// Execs `path` with `args` and `env` through the trampoline `tramp` (or directly without one).
/// Returns only on failure.
pub fn exec(tramp: Option<&OwnedFd>, path: &CString, args: &[CString], env: &[CString]) -> Error {
    let envp: Vec<*const libc::c_char> = env
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    match tramp {
        Some(fd) => {
            let argv: Vec<*const libc::c_char> = std::iter::once(path.as_ptr())
                .chain(args.iter().map(|s| s.as_ptr()))
                .chain(std::iter::once(std::ptr::null()))
                .collect();
            // SAFETY: argv and envp are NULL-terminated arrays of valid C strings that outlive
            // the call; the empty path with AT_EMPTY_PATH executes the fd itself.
            unsafe {
                libc::syscall(
                    libc::SYS_execveat,
                    fd.as_raw_fd(),
                    c"".as_ptr(),
                    argv.as_ptr(),
                    envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                )
            };
        }
        None => {
            let argv: Vec<*const libc::c_char> = args
                .iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect();
            // SAFETY: as above.
            unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        }
    }
    Error::Os {
        step: format!("exec {:?}", path),
        source: std::io::Error::last_os_error(),
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn trampoline_execs_its_first_argument() {
        let fd = create().unwrap().unwrap();
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        use std::os::unix::process::CommandExt;
        // The fd is close-on-exec; clear it for the child so it can exec the memfd by path.
        let raw = fd.as_raw_fd();
        let mut cmd = std::process::Command::new(&path);
        cmd.arg0("/bin/sh")
            .args(["sh", "-c", "echo hello-$X"])
            .env("X", "tramp");
        // SAFETY: pre_exec runs in the forked child; fcntl is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                crate::sys::set_cloexec(raw, false);
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello-tramp\n");
        // With nothing to exec it exits 127.
        let mut cmd = std::process::Command::new(&path);
        // SAFETY: as above.
        unsafe {
            cmd.pre_exec(move || {
                crate::sys::set_cloexec(raw, false);
                Ok(())
            });
        }
        assert_eq!(cmd.status().unwrap().code(), Some(127));
    }
}
