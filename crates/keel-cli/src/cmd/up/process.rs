//! The processes of the mesh: starting a replica (its app and its sidecar), noticing one that
//! exits, and stopping them.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::image::Program;
use super::plan::{Ports, Replica};
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

/// The line announcing that a replica starts (the tests read its app port).
pub(super) fn starting(r: &Replica, ports: Ports) -> String {
    if r.inject {
        format!(
            "… starting {}.{} (app 127.0.0.1:{}, sidecar inbound {}, outbound {})",
            r.pod, r.namespace, ports.app, ports.inbound, ports.outbound
        )
    } else {
        format!(
            "… starting {}.{} (app 127.0.0.1:{}, no sidecar: sidecar.istio.io/inject is false)",
            r.pod, r.namespace, ports.app
        )
    }
}

pub(super) fn log_file(logs: &Path, name: &str) -> std::io::Result<(std::fs::File, std::fs::File)> {
    let f = std::fs::File::create(logs.join(name))?;
    let g = f.try_clone()?;
    Ok((f, g))
}

pub(super) fn start_replica(
    r: &Replica,
    ports: Ports,
    xds: std::net::SocketAddr,
    logs: &Path,
    proxy_bin: &Path,
    sample_bin: Option<&Path>,
) -> std::io::Result<Vec<Proc>> {
    use std::os::unix::process::CommandExt;
    let mut out = Vec::new();
    if r.inject {
        let (o, e) = log_file(logs, &format!("{}.proxy.log", r.pod))?;
        let mut proxy = Command::new(proxy_bin);
        proxy
            .arg("sidecar")
            .args(["--xds", &format!("http://{xds}")])
            .args(["--node-id", &format!("{}.{}", r.pod, r.namespace)])
            .args(["-n", &r.namespace])
            .args(["--workload", &r.deployment])
            .args(["--workers", "1"])
            .args(["--bind", "127.0.0.1"])
            .args(["--outbound-port", &ports.outbound.to_string()])
            .args(["--inbound-port", &ports.inbound.to_string()])
            .args(["--admin", &format!("127.0.0.1:{}", ports.admin)])
            .args(["--stats", "none"])
            // Istio's demo profile logs every request to the sidecar's stdout, which the
            // tasks read (response flags such as UO, the Host of mirrored copies).
            .args(["--access-log", "text"]);
        let app_port = if r.protocol.is_empty() {
            ports.app.to_string()
        } else {
            format!("{}/{}", ports.app, r.protocol)
        };
        proxy.args(["--app-port", &app_port]);
        for (k, v) in &r.labels {
            proxy.args(["--label", &format!("{k}={v}")]);
        }
        proxy
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .process_group(0);
        out.push(Proc {
            what: format!("sidecar of {}", r.pod),
            child: proxy.spawn()?,
        });
    }
    let (o, e) = log_file(logs, &format!("{}.log", r.pod))?;
    let port = ports.app.to_string();
    let mut app = match &r.command.program {
        Program::Sample(args) => {
            let Some(bin) = sample_bin else {
                return Err(std::io::Error::other("keel-sample not found"));
            };
            let mut c = Command::new(bin);
            c.args(args.iter().map(|a| {
                if a == "$PORT" {
                    port.as_str()
                } else {
                    a.as_str()
                }
            }));
            c
        }
        Program::Shell(line) => {
            let mut c = Command::new("sh");
            c.args(["-c", line]);
            c
        }
    };
    if r.inject {
        let proxy_url = format!("http://127.0.0.1:{}", ports.outbound);
        app.env("HTTP_PROXY", &proxy_url)
            .env("http_proxy", &proxy_url)
            .env("NO_PROXY", "")
            .env("no_proxy", "");
    }
    app.envs(r.command.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(r.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PORT", &port)
        .env("BIND_ADDRESS", "127.0.0.1")
        .env("HOSTNAME", &r.pod)
        .env("POD_NAME", &r.pod)
        .env("POD_NAMESPACE", &r.namespace)
        .stdin(Stdio::null())
        .stdout(o)
        .stderr(e)
        .process_group(0);
    match app.spawn() {
        Ok(child) => out.push(Proc {
            what: r.pod.clone(),
            child,
        }),
        Err(err) => {
            // Don't leave the sidecar behind.
            for p in &mut out {
                p.kill();
            }
            return Err(err);
        }
    }
    Ok(out)
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
