//! One mapping from the shim's failures to ttrpc status codes (containerd's errdefs, as
//! `containerd-shim-runc-v2` returns them): a missing container or process is NOT_FOUND, a
//! request its state does not allow FAILED_PRECONDITION, a bad request INVALID_ARGUMENT, and a
//! runtime that failed UNKNOWN with its own message.

use crate::runtime::RuntimeError;
use ttrpc::{Code, Error as TtrpcError};

/// A ttrpc error with `code` and a message.
pub fn status(code: Code, msg: impl ToString) -> TtrpcError {
    TtrpcError::RpcStatus(ttrpc::get_status(code, msg))
}

/// NOT_FOUND for a container or process the shim does not know.
pub fn not_found(what: impl std::fmt::Display) -> TtrpcError {
    status(Code::NOT_FOUND, format!("{what}: not found"))
}

/// A failed runtime command: UNKNOWN with the runtime's own message, which callers show as
/// is ("exec: \"x\": executable file not found" is read by docker). Where a gone container
/// is not a failure (delete), the caller asks [`container_is_gone`] first; the shim's own
/// knowledge of exits decides NOT_FOUND for kill.
pub fn runtime_err(e: RuntimeError) -> TtrpcError {
    status(Code::UNKNOWN, e.to_string())
}

/// Whether the runtime failed because the container does not exist. The runtime is another
/// program (dray, runc or crun) that reports this only in words: runc and dray print "container
/// ... does not exist", crun "container ... not found" (containerd's pkg/process reads them the
/// same way). This is the one place that reads a runtime's message.
pub fn container_is_gone(e: &RuntimeError) -> bool {
    match e {
        RuntimeError::Failed(msg) => msg.contains("does not exist") || msg.contains("not found"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: TtrpcError) -> Code {
        match e {
            TtrpcError::RpcStatus(s) => s.code(),
            other => panic!("not a status: {other:?}"),
        }
    }

    #[test]
    fn runtime_failures_map_to_codes() {
        for (msg, gone) in [
            ("container \"a\" does not exist", true),
            ("container `a` not found", true),
            ("cannot start a container in the stopped state", false),
        ] {
            let e = RuntimeError::Failed(msg.into());
            assert_eq!(container_is_gone(&e), gone, "{msg}");
            // Its own message, whatever it says.
            assert_eq!(code(runtime_err(e)), Code::UNKNOWN, "{msg}");
        }
        let spawn = RuntimeError::Spawn("dray".into(), std::io::Error::from_raw_os_error(libc::ENOENT));
        assert!(!container_is_gone(&spawn));
        assert_eq!(code(runtime_err(spawn)), Code::UNKNOWN);
        assert_eq!(code(not_found("container x")), Code::NOT_FOUND);
    }
}
