//! The processes of the mesh: starting a replica (its sidecar and a process per container),
//! noticing one that exits, and stopping them.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::super::servers::MeshCa;
use super::image::{Program, expand_arg};
use super::plan::{Ports, Replica};
use super::ports::PortReservation;
use super::signal;

/// A running process of the mesh.
pub(super) struct Proc {
    pub(super) what: String,
    pub(super) child: Child,
}

impl Proc {
    /// Signals the child's process group, not only the child: each child leads a group of its
    /// own (`process_group(0)`), and a command run with `sh -c` (`--run`, `keel.dev/run`) has
    /// children of its own, which a signal to the shell alone left running after `keel down`.
    pub(super) fn signal(&self, sig: &str) {
        signal(&format!("-{}", self.child.id()), sig);
    }

    /// SIGKILL to the group, and reaps the child.
    pub(super) fn kill(&mut self) {
        self.signal("KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    /// A child still running when its handle goes (an early return, a panic) is killed, so
    /// `keel up` never leaves processes behind it stopped supervising.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// The line announcing that a replica starts (the tests read its app port, the first one).
/// A pod with one port and one container reads as it always did; more show as
/// `containerPort→local`.
pub(super) fn starting(r: &Replica, ports: &Ports) -> String {
    let first = ports.port_of(r, 0).map_or("-".into(), |p| p.to_string());
    let mut app = format!("app 127.0.0.1:{first}");
    if r.containers.len() > 1 {
        let names: Vec<&str> = r.containers.iter().map(|c| c.name.as_str()).collect();
        app.push_str(&format!(", containers {}", names.join("+")));
    }
    let numbered = r.ports.iter().filter(|p| p.port != 0).count();
    if numbered > 1 {
        let each: Vec<String> = r
            .ports
            .iter()
            .zip(&ports.app)
            .filter(|(p, _)| p.port != 0)
            .map(|(p, l)| format!("{}→{l}", p.port))
            .collect();
        app.push_str(&format!(", ports {}", each.join(" ")));
    }
    if !r.inject {
        return format!(
            "… starting {}.{} ({app}, no sidecar: sidecar.istio.io/inject is false)",
            r.pod, r.namespace
        );
    }
    let targets = r.inbound_targets();
    let inbound = if ports.inbound.len() == 1 {
        ports.inbound[0].to_string()
    } else {
        targets
            .iter()
            .zip(&ports.inbound)
            .map(|(k, l)| format!("{}→{l}", r.ports[*k].port))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "… starting {}.{} ({app}, sidecar inbound {inbound}, outbound {})",
        r.pod, r.namespace, ports.outbound
    )
}

/// The summary line of a ready replica: where its app calls out, its admin port, its logs.
pub(super) fn summary(r: &Replica, p: &Ports, logs: &Path) -> String {
    let mut files: Vec<String> = (0..r.containers.len())
        .map(|i| format!("{}/{}", logs.display(), r.log_file(i)))
        .collect();
    if !r.inject {
        let app = p.port_of(r, 0).map_or("-".into(), |p| p.to_string());
        return format!(
            "  {}.{}: no sidecar, app on 127.0.0.1:{app} (logs: {})",
            r.pod,
            r.namespace,
            files.join(", ")
        );
    }
    files.push(format!("{}/{}.proxy.log", logs.display(), r.pod));
    format!(
        "  {}.{}: HTTP_PROXY=http://127.0.0.1:{} (admin http://127.0.0.1:{}; logs: {})",
        r.pod,
        r.namespace,
        p.outbound,
        p.admin,
        files.join(", ")
    )
}

/// A log file opened for appending (a restarted process adds to what it wrote before, as
/// `kubectl logs --previous` would show), for stdout and stderr.
pub(super) fn log_file(logs: &Path, name: &str) -> std::io::Result<(std::fs::File, std::fs::File)> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join(name))?;
    let g = f.try_clone()?;
    Ok((f, g))
}

/// Where and with what a pod's processes start.
pub(super) struct Binaries<'a> {
    pub xds: std::net::SocketAddr,
    pub logs: &'a Path,
    pub proxy: &'a Path,
    pub sample: Option<&'a Path>,
    /// The mesh's CA: sidecars get a certificate for their service account from it.
    pub ca: Option<&'a MeshCa>,
}

/// The flags that give a proxy its workload certificate: the CA, its root, and a bootstrap
/// token for `namespace`/`service_account`, written owner-only beside the logs (in
/// `STATE/tokens/`) as a Kubernetes service-account token is mounted into a pod.
pub(super) fn identity_args(
    ca: &MeshCa,
    logs: &Path,
    namespace: &str,
    service_account: &str,
    pod: &str,
) -> std::io::Result<Vec<String>> {
    let dir = logs.with_file_name("tokens");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("{pod}.{namespace}"));
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&file)?;
        f.write_all(ca.tokens.issue(namespace, service_account).as_bytes())?;
    }
    Ok(vec![
        "--service-account".into(),
        service_account.into(),
        "--ca-address".into(),
        ca.addr.to_string(),
        "--ca-root-cert".into(),
        ca.root.display().to_string(),
        "--ca-token-file".into(),
        file.display().to_string(),
    ])
}

/// Starts a replica: its sidecar (if injected), then each container, in this order.
pub(super) fn start_replica(
    r: &Replica,
    ports: &Ports,
    bins: &Binaries,
) -> std::io::Result<Vec<Proc>> {
    // A new pod starts with empty logs (a pod name can be used again).
    let mut files: Vec<String> = (0..r.containers.len()).map(|i| r.log_file(i)).collect();
    files.push(format!("{}.proxy.log", r.pod));
    for f in files {
        std::fs::File::create(bins.logs.join(f))?;
    }
    let mut out = Vec::new();
    if r.inject {
        out.push(start_sidecar(r, ports, bins)?);
    }
    for i in 0..r.containers.len() {
        match start_container(r, i, ports, bins) {
            Ok(p) => out.push(p),
            Err(err) => {
                // Don't leave the others behind.
                for p in &mut out {
                    p.kill();
                }
                return Err(err);
            }
        }
    }
    Ok(out)
}

/// Starts a replica's sidecar: one inbound listener per port its Services target, each
/// paired (`--inbound-port`, `--app-port` in the same position) with that port's local port,
/// and counted as the pod's port (`--app-port 8080=LOCAL`), which PeerAuthentication's
/// `portLevelMtls` and AuthorizationPolicy's `ports` name.
pub(super) fn start_sidecar(r: &Replica, ports: &Ports, bins: &Binaries) -> std::io::Result<Proc> {
    use std::os::unix::process::CommandExt;
    let (o, e) = log_file(bins.logs, &format!("{}.proxy.log", r.pod))?;
    let mut proxy = Command::new(bins.proxy);
    proxy
        .arg("sidecar")
        .args(["--xds", &format!("http://{}", bins.xds)])
        .args(["--node-id", &format!("{}.{}", r.pod, r.namespace)])
        .args(["-n", &r.namespace])
        .args(["--workload", &r.deployment])
        .args(["--workers", "1"])
        .args(["--bind", "127.0.0.1"])
        .args(["--outbound-port", &ports.outbound.to_string()])
        .args(["--admin", &format!("127.0.0.1:{}", ports.admin)])
        .args(["--stats", "none"])
        // Istio's demo profile logs every request to the sidecar's stdout, which the
        // tasks read (response flags such as UO, the Host of mirrored copies).
        .args(["--access-log", "text"]);
    for (k, inbound) in r.inbound_targets().into_iter().zip(&ports.inbound) {
        let (Some(port), Some(local)) = (r.ports.get(k), ports.app.get(k)) else {
            continue;
        };
        // `PORT=LOCAL`: policies name the pod's port (8080), the app serves it on its own
        // loopback port.
        let mut app_port = if port.port == 0 || port.port == *local {
            local.to_string()
        } else {
            format!("{}={local}", port.port)
        };
        if !port.protocol.is_empty() {
            app_port = format!("{app_port}/{}", port.protocol);
        }
        proxy
            .args(["--inbound-port", &inbound.to_string()])
            .args(["--app-port", &app_port]);
    }
    for (k, v) in &r.labels {
        proxy.args(["--label", &format!("{k}={v}")]);
    }
    if let Some(ca) = bins.ca {
        proxy.args(identity_args(
            ca,
            bins.logs,
            &r.namespace,
            &r.service_account,
            &r.pod,
        )?);
    }
    proxy
        .stdin(Stdio::null())
        .stdout(o)
        .stderr(e)
        .process_group(0);
    Ok(Proc {
        what: format!("sidecar of {}", r.pod),
        child: proxy.spawn()?,
    })
}

/// Starts container `i` of a replica, with the pod's environment and its own.
pub(super) fn start_container(
    r: &Replica,
    i: usize,
    ports: &Ports,
    bins: &Binaries,
) -> std::io::Result<Proc> {
    use std::os::unix::process::CommandExt;
    let Some(c) = r.containers.get(i) else {
        return Err(std::io::Error::other(format!(
            "{} has no container {i}",
            r.pod
        )));
    };
    let (o, e) = log_file(bins.logs, &r.log_file(i))?;
    let port = ports.port_of(r, i);
    let mut app = match &c.command.program {
        Program::Sample(args) => {
            let Some(bin) = bins.sample else {
                return Err(std::io::Error::other("keel-sample not found"));
            };
            let mut cmd = Command::new(bin);
            cmd.args(
                args.iter()
                    .map(|a| expand_arg(a, port, |n| ports.local(r, n))),
            );
            cmd
        }
        Program::Shell(line) => {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", line]);
            cmd
        }
    };
    if r.inject {
        let proxy_url = format!("http://127.0.0.1:{}", ports.outbound);
        app.env("HTTP_PROXY", &proxy_url)
            .env("http_proxy", &proxy_url)
            .env("NO_PROXY", "")
            .env("no_proxy", "");
    }
    app.env_remove("PORT")
        .envs(c.command.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(c.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(ports.env(r));
    if let Some(port) = port {
        app.env("PORT", port.to_string());
    }
    app.env("BIND_ADDRESS", "127.0.0.1")
        .env("HOSTNAME", &r.pod)
        .env("POD_NAME", &r.pod)
        .env("POD_NAMESPACE", &r.namespace)
        .stdin(Stdio::null())
        .stdout(o)
        .stderr(e)
        .process_group(0);
    let what = if i == 0 {
        r.pod.clone()
    } else {
        format!("{} container {}", r.pod, c.name)
    };
    Ok(Proc {
        what,
        child: app.spawn()?,
    })
}

/// Releases the app ports of a replica whose commands are the user's (`--run`,
/// `keel.dev/run`): they may bind without `SO_REUSEADDR`.
pub(super) fn unshare_app_ports(r: &Replica, ports: &Ports, reserved: &mut PortReservation) {
    if r.containers
        .iter()
        .any(|c| matches!(c.command.program, Program::Shell(_)))
    {
        for p in &ports.app {
            reserved.release(*p);
        }
    }
}

pub(super) fn exited(procs: &mut [Proc]) -> Option<String> {
    procs.iter_mut().find_map(|p| match p.child.try_wait() {
        Ok(Some(status)) => Some(format!("{} ({status})", p.what)),
        _ => None,
    })
}

/// SIGTERM to every child (apps first, then sidecars), SIGKILL after 12 s.
pub(super) async fn stop_all(procs: &mut [Proc]) {
    procs.sort_by_key(|p| p.what.starts_with("sidecar"));
    for p in procs.iter() {
        p.signal("TERM");
    }
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let mut running: Vec<&mut Proc> = Vec::new();
        for p in procs.iter_mut() {
            if !matches!(p.child.try_wait(), Ok(Some(_))) {
                running.push(p);
            }
        }
        if running.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            for p in running {
                shout!("warning: {} did not stop within 12 s; killed", p.what);
                p.kill();
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
