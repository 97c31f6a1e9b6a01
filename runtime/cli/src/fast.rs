//! A fast path for the command lines that engines run for every container (`create`, `run`,
//! `start`, `state`, `kill`, `delete`, with runc's flags): building clap's parser for the whole
//! command tree costs about 0.4 ms per invocation, a noticeable part of a container's start.
//!
//! It accepts only plain forms of those commands and gives up (None) on anything else, so that
//! clap parses it and produces its usual help and errors: another command, an unknown or
//! repeated flag, a value that starts with '-', short flags grouped or with attached values,
//! `--`, help and version flags. Whatever it accepts, it parses exactly as clap does (the
//! tests compare both).

use crate::{Cli, Cmd, CreateArgs, LogFormat};
use std::path::PathBuf;

/// Parses `args` (program name first) or returns None to let clap do it.
pub fn parse(args: &[String]) -> Option<Cli> {
    let mut root = None;
    let mut log = None;
    let mut log_format = None;
    let mut debug = false;
    let mut sub: Option<&str> = None;
    let mut positional: Vec<String> = Vec::new();
    // Subcommand flags.
    let mut bundle = None;
    let mut console_socket = None;
    let mut pid_file = None;
    let mut preserve_fds = None;
    let (mut no_pivot, mut no_new_keyring, mut detach, mut force, mut all) = (false, false, false, false, false);

    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if !a.starts_with('-') {
            if sub.is_none() {
                sub = Some(a.as_str());
            } else {
                positional.push(a.clone());
            }
            continue;
        }
        // "--name=value" or "--name value"; short flags only as a separate "-x".
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = |slot: &mut Option<String>| -> Option<()> {
            if slot.is_some() {
                return None;
            }
            let v = match &inline {
                Some(v) => v.clone(),
                None => it.next()?.clone(),
            };
            // clap refuses empty paths; a value like an option may mean something else to it.
            if v.is_empty() || v.starts_with('-') {
                return None;
            }
            *slot = Some(v);
            Some(())
        };
        let flag = |slot: &mut bool| -> Option<()> {
            if *slot || inline.is_some() {
                return None;
            }
            *slot = true;
            Some(())
        };
        match (sub, name) {
            (_, "--root") => value(&mut root)?,
            (_, "--log") => value(&mut log)?,
            (_, "--log-format") => value(&mut log_format)?,
            (_, "--debug") => flag(&mut debug)?,
            (Some("create" | "run"), "-b" | "--bundle") => value(&mut bundle)?,
            (Some("create" | "run"), "--console-socket") => value(&mut console_socket)?,
            (Some("create" | "run"), "--pid-file") => value(&mut pid_file)?,
            (Some("create" | "run"), "--preserve-fds") => value(&mut preserve_fds)?,
            (Some("create" | "run"), "--no-pivot") => flag(&mut no_pivot)?,
            (Some("create" | "run"), "--no-new-keyring") => flag(&mut no_new_keyring)?,
            (Some("run"), "-d" | "--detach") => flag(&mut detach)?,
            (Some("delete"), "-f" | "--force") => flag(&mut force)?,
            (Some("kill"), "-a" | "--all") => flag(&mut all)?,
            _ => return None,
        }
    }

    let create_args = |id: String| -> Option<CreateArgs> {
        Some(CreateArgs {
            bundle: PathBuf::from(bundle.clone().unwrap_or_else(|| ".".into())),
            console_socket: console_socket.clone().map(PathBuf::from),
            pid_file: pid_file.clone().map(PathBuf::from),
            no_pivot,
            no_new_keyring,
            preserve_fds: match &preserve_fds {
                Some(n) => n.parse().ok()?,
                None => 0,
            },
            id,
        })
    };
    let mut pos = positional.into_iter();
    let mut one = || pos.next();
    let cmd = match sub? {
        "create" => Cmd::Create(create_args(one()?)?),
        "run" => Cmd::Run {
            args: create_args(one()?)?,
            detach,
            keep: false,
        },
        "start" => Cmd::Start { id: one()? },
        "state" => Cmd::State { id: one()? },
        "delete" => Cmd::Delete { id: one()?, force },
        "kill" => Cmd::Kill {
            id: one()?,
            signal: pos.next(),
            all,
        },
        _ => return None,
    };
    if pos.next().is_some() {
        return None;
    }
    Some(Cli {
        root: PathBuf::from(root.unwrap_or_else(|| "/run/dray".into())),
        log: log.map(PathBuf::from),
        log_format: match log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => return None,
        },
        debug,
        systemd_cgroup: false,
        rootless: None,
        criu: None,
        version: false,
        cmd: Some(cmd),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn argv(s: &str) -> Vec<String> {
        std::iter::once("dray")
            .chain(s.split(' ').filter(|x| !x.is_empty()))
            .map(String::from)
            .collect()
    }

    #[test]
    fn accepted_command_lines_parse_as_clap_parses_them() {
        for line in [
            "create x",
            "create -b /b x",
            "create --bundle /b --pid-file /p --console-socket /s x",
            "create --bundle=/b --pid-file=/p --preserve-fds 2 --no-pivot --no-new-keyring x",
            "--root /r --log /l --log-format json create -b /b x",
            "--root=/r create x --debug --log-format=text",
            "create x --root /r",
            "run -b /b x",
            "run -d --bundle /b x",
            "run --detach --preserve-fds=3 x",
            "--debug run x",
            "start x",
            "--root /r start x",
            "state x",
            "delete x",
            "delete -f x",
            "delete --force x --root /r",
            "kill x",
            "kill x KILL",
            "kill -a x 9",
            "kill --all x SIGTERM",
        ] {
            let a = argv(line);
            let fast = parse(&a).unwrap_or_else(|| panic!("fast path refused {line:?}"));
            let clap = Cli::try_parse_from(&a).unwrap_or_else(|e| panic!("clap refused {line:?}: {e}"));
            assert_eq!(format!("{fast:?}"), format!("{clap:?}"), "{line:?}");
        }
    }

    #[test]
    fn everything_else_is_left_to_clap() {
        for line in [
            "",
            "--help",
            "create --help",
            "-v",
            "--version",
            "list",
            "exec x true",
            "create",
            "create x y",
            "create -bfoo x",
            "create -b=/b x",
            "create -b -x x",
            "create -b /a -b /b x",
            "create --bundle",
            "-b /b create x",
            "run -db /b x",
            "delete -f -f x",
            "delete --force=true x",
            "kill x 9 extra",
            "kill -- x",
            "start x --detach",
            "--log-format xml state x",
            "--systemd-cgroup create x",
            "--rootless create x",
            "create --preserve-fds many x",
            "state -",
            "--root= create x",
            "create --pid-file= x",
            "create --bundle= x",
            "--log= start x",
        ] {
            assert!(parse(&argv(line)).is_none(), "fast path took {line:?}");
        }
    }
}
