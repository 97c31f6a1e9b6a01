//! docker's `inspect` document for a container (Engine API `ContainerJSON`): the same keys
//! and layout, so that `--format '{{.State.Pid}}'` and scripts written for docker work.

use serde_json::{json, Value};

use super::record::{Record, Status};
use crate::logs::format_time;

/// docker prints the zero time for "never".
fn time_or_zero(nanos: i64) -> String {
    if nanos == 0 {
        "0001-01-01T00:00:00Z".into()
    } else {
        format_time(nanos)
    }
}

/// HostConfig.PortBindings: what the user asked for ("" for a free host port).
fn port_bindings(ports: &[crate::network::Binding]) -> Value {
    let mut m = serde_json::Map::new();
    for b in ports {
        let key = format!("{}/{}", b.container_port, b.proto);
        let entry = m.entry(key).or_insert_with(|| json!([]));
        if let Some(a) = entry.as_array_mut() {
            a.push(json!({
                "HostIp": b.host_ip,
                "HostPort": if b.host_port == 0 { String::new() } else { b.host_port.to_string() },
            }));
        }
    }
    Value::Object(m)
}

/// NetworkSettings: the ports as bound (every exposed port, null where unpublished), each
/// network with the container's address there, and the default bridge's address at the top
/// as docker shows it.
fn network_settings(r: &Record) -> Value {
    let net = &r.state.network;
    let mut ports = serde_json::Map::new();
    if !net.netns.is_empty() {
        for e in &r.resolved.exposed_ports {
            let key = if e.contains('/') { e.clone() } else { format!("{e}/tcp") };
            ports.insert(key, Value::Null);
        }
        for b in &net.ports {
            let key = format!("{}/{}", b.container_port, b.proto);
            let v = ports.entry(key).or_insert(Value::Null);
            if v.is_null() {
                *v = json!([]);
            }
            if let Some(a) = v.as_array_mut() {
                a.push(json!({
                    "HostIp": if b.host_ip.is_empty() { "0.0.0.0" } else { b.host_ip.as_str() },
                    "HostPort": b.host_port.to_string(),
                }));
            }
        }
    }
    let mut networks = serde_json::Map::new();
    for j in super::net::joined_networks(&r.options) {
        let ep = net.endpoints.iter().find(|e| e.network == j.name);
        let ip = ep.map(|e| e.address().to_string()).unwrap_or_default();
        networks.insert(
            j.name.clone(),
            json!({
                "IPAMConfig": if j.ip.is_empty() { Value::Null } else { json!({"IPv4Address": j.ip}) },
                "Links": null,
                "Aliases": if j.aliases.is_empty() { Value::Null } else { json!(j.aliases) },
                "NetworkID": ep.map(|e| e.network_id.clone()).unwrap_or_default(),
                "EndpointID": ep.map(|e| format!("{}-{}", &r.id[..12], e.ifname)).unwrap_or_default(),
                "Gateway": ep.map(|e| e.gateway.clone()).unwrap_or_default(),
                "IPAddress": ip,
                "IPPrefixLen": ep.map(|e| e.prefix_len()).unwrap_or(0),
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "MacAddress": ep.map(|e| e.mac.clone()).unwrap_or_default(),
                "DriverOpts": null,
            }),
        );
    }
    let default = net.endpoints.iter().find(|e| e.network == "bridge");
    json!({
        "Bridge": "",
        "SandboxID": if net.netns.is_empty() { String::new() } else { r.id.clone() },
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports,
        "SandboxKey": net.netns,
        "SecondaryIPAddresses": null,
        "SecondaryIPv6Addresses": null,
        "EndpointID": default.map(|e| format!("{}-{}", &r.id[..12], e.ifname)).unwrap_or_default(),
        "Gateway": default.map(|e| e.gateway.clone()).unwrap_or_default(),
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": default.map(|e| e.address().to_string()).unwrap_or_default(),
        "IPPrefixLen": default.map(|e| e.prefix_len()).unwrap_or(0),
        "IPv6Gateway": "",
        "MacAddress": default.map(|e| e.mac.clone()).unwrap_or_default(),
        "Networks": networks,
    })
}

/// The document; `log_path` and `size` (SizeRw) come from the service.
pub fn document(r: &Record, log_path: &str, size_rw: Option<i64>) -> Value {
    let o = &r.options;
    let st = &r.state;
    let mounts: Vec<Value> = o
        .mounts
        .iter()
        .map(|m| {
            json!({
                "Type": m.kind,
                "Source": m.source,
                "Destination": m.target,
                "Mode": if m.kind == "bind" && !m.options.is_empty() { m.options.join(",") } else { String::new() },
                "RW": !m.read_only,
                "Propagation": if m.kind == "bind" { "rprivate" } else { "" },
            })
        })
        .collect();
    let binds: Vec<String> = o
        .mounts
        .iter()
        .filter(|m| m.kind == "bind" && m.create_source)
        .map(|m| format!("{}:{}{}", m.source, m.target, if m.read_only { ":ro" } else { "" }))
        .collect();
    let tmpfs: serde_json::Map<String, Value> = o
        .mounts
        .iter()
        .filter(|m| m.kind == "tmpfs")
        .map(|m| (m.target.clone(), Value::String(m.options.join(","))))
        .collect();
    let mut doc = json!({
        "Id": r.id,
        "Created": format_time(r.created),
        "Path": r.resolved.args().first().cloned().unwrap_or_default(),
        "Args": r.resolved.args().iter().skip(1).cloned().collect::<Vec<_>>(),
        "State": {
            "Status": st.status.as_str(),
            "Running": st.status.is_live(),
            "Paused": st.status == Status::Paused,
            "Restarting": st.status == Status::Restarting,
            "OOMKilled": st.oom_killed,
            "Dead": st.status == Status::Dead,
            "Pid": st.pid,
            "ExitCode": st.exit_code,
            "Error": st.error,
            "StartedAt": time_or_zero(st.started_at),
            "FinishedAt": time_or_zero(st.finished_at),
        },
        "Image": r.image_id,
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": log_path,
        "Name": format!("/{}", r.name),
        "RestartCount": st.restart_count,
        "Driver": "overlayfs",
        "Platform": "linux",
        "HostConfig": {
            "Binds": if binds.is_empty() { Value::Null } else { json!(binds) },
            "LogConfig": {"Type": "json-file", "Config": o.log_opts},
            "NetworkMode": if o.network_mode.is_empty() { "default" } else { o.network_mode.as_str() },
            "RestartPolicy": {"Name": if o.restart_policy.name.is_empty() { "no" } else { o.restart_policy.name.as_str() }, "MaximumRetryCount": o.restart_policy.maximum_retry_count},
            "AutoRemove": o.auto_remove,
            "CapAdd": o.cap_add,
            "CapDrop": o.cap_drop,
            "Privileged": o.privileged,
            "ReadonlyRootfs": o.read_only_rootfs,
            "SecurityOpt": o.security_opt,
            "Tmpfs": tmpfs,
            "ShmSize": if o.shm_size > 0 { o.shm_size } else { 64 * 1024 * 1024 },
            "Runtime": r.resolved.runtime,
            "Memory": o.memory,
            "MemorySwap": o.memory_swap,
            "NanoCpus": o.nano_cpus,
            "CpuShares": o.cpu_shares,
            "PidsLimit": o.pids_limit,
            "Ulimits": o.ulimits.iter().map(|u| json!({"Name": u.name, "Soft": u.soft, "Hard": u.hard})).collect::<Vec<_>>(),
            "Devices": o.devices.iter().map(|d| json!({"PathOnHost": d.path_on_host, "PathInContainer": d.path_in_container, "CgroupPermissions": d.cgroup_permissions})).collect::<Vec<_>>(),
            "Init": o.init,
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": r.resolved.hostname,
            "User": r.resolved.user,
            "Tty": o.tty,
            "OpenStdin": o.open_stdin,
            "StdinOnce": o.stdin_once,
            "Env": r.resolved.env,
            "Cmd": r.resolved.cmd,
            "Image": r.image,
            "WorkingDir": r.resolved.working_dir,
            "Entrypoint": if r.resolved.entrypoint.is_empty() { Value::Null } else { json!(r.resolved.entrypoint) },
            "Labels": r.resolved.labels,
            "StopSignal": r.resolved.stop_signal,
            "StopTimeout": o.stop_timeout,
            "ExposedPorts": r.resolved.exposed_ports.iter().map(|p| (p.clone(), json!({}))).collect::<serde_json::Map<_, _>>(),
            "Volumes": r.resolved.volumes.iter().map(|p| (p.clone(), json!({}))).collect::<serde_json::Map<_, _>>(),
        },
        "NetworkSettings": network_settings(r),
    });
    let hc = &mut doc["HostConfig"];
    hc["PortBindings"] = port_bindings(&o.ports);
    hc["PublishAllPorts"] = json!(o.publish_all);
    hc["Dns"] = json!(o.dns);
    hc["DnsSearch"] = json!(o.dns_search);
    hc["DnsOptions"] = json!(o.dns_options);
    hc["ExtraHosts"] = if o.extra_hosts.is_empty() {
        Value::Null
    } else {
        json!(o.extra_hosts)
    };
    if let Some(s) = size_rw {
        doc["SizeRw"] = json!(s);
    }
    doc
}
