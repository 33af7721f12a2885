//! What a running local mesh tells other commands about its pods (`STATE/pods.json`), and
//! the two commands that use it: `keel logs` (a workload's or its sidecar's log) and
//! `keel exec` (a command run as the workload, through its sidecar).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::plan::{Ports, Replica};
use super::state_dir;
use crate::cli::{ExecArgs, LogsArgs};
use crate::exit;

const PODS_FILE: &str = "pods.json";

/// One pod of the mesh, as `pods.json` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodInfo {
    /// `<deployment>-<index>`.
    pub pod: String,
    pub namespace: String,
    pub deployment: String,
    /// Runs with a sidecar.
    pub sidecar: bool,
    /// The first container's `PORT`.
    pub app_port: u16,
    /// The sidecar's outbound listener (the app's `HTTP_PROXY`); 0 without a sidecar.
    pub outbound_port: u16,
    pub admin_port: u16,
    /// How many times its sidecar was restarted.
    #[serde(default)]
    pub sidecar_restarts: u32,
    /// The pod's containers, in order (the first is `keel logs`' default).
    #[serde(default)]
    pub containers: Vec<ContainerInfo>,
    /// Each port of the pod.
    #[serde(default)]
    pub ports: Vec<PortInfo>,
}

/// A container of a pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub name: String,
    /// Its log file, in the logs directory.
    pub log: String,
    /// How many times it was restarted (Kubernetes' `restartCount`).
    #[serde(default)]
    pub restarts: u32,
}

/// A port of a pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortInfo {
    /// As the manifests number it (`containerPort`, or a Service's `targetPort`); 0 for the
    /// spare `PORT` of a pod that declares none.
    pub container_port: u16,
    /// Where the app listens for it (`PORT_<container_port>`).
    pub app_port: u16,
    /// The sidecar's inbound listener for it; 0 when no Service targets it.
    pub inbound_port: u16,
}

/// Writes `pods.json` for pods just started (no restarts yet).
pub fn write(dir: &Path, replicas: &[Replica], ports: &[Ports]) -> std::io::Result<()> {
    let pods: Vec<PodInfo> = replicas
        .iter()
        .zip(ports)
        .map(|(r, p)| info(r, p, 0, &[]))
        .collect();
    write_infos(dir, &pods)
}

/// What `pods.json` says of a pod, with the restarts of its sidecar and of each container.
pub fn info(r: &Replica, p: &Ports, sidecar_restarts: u32, restarts: &[u32]) -> PodInfo {
    PodInfo {
        pod: r.pod.clone(),
        namespace: r.namespace.clone(),
        deployment: r.deployment.clone(),
        sidecar: r.inject,
        app_port: p.port_of(r, 0).unwrap_or(0),
        outbound_port: if r.inject { p.outbound } else { 0 },
        admin_port: if r.inject { p.admin } else { 0 },
        sidecar_restarts,
        containers: r
            .containers
            .iter()
            .enumerate()
            .map(|(i, c)| ContainerInfo {
                name: c.name.clone(),
                log: r.log_file(i),
                restarts: restarts.get(i).copied().unwrap_or(0),
            })
            .collect(),
        ports: r
            .ports
            .iter()
            .zip(&p.app)
            .map(|(port, local)| PortInfo {
                container_port: port.port,
                app_port: *local,
                inbound_port: if r.inject && port.targeted {
                    p.endpoint(r, port.port).unwrap_or(0)
                } else {
                    0
                },
            })
            .collect(),
    }
}

/// Writes `pods.json` (temp file and rename, so readers never see half of it).
pub fn write_infos(dir: &Path, pods: &[PodInfo]) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(pods).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!(".{PODS_FILE}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, dir.join(PODS_FILE))
}

fn read(dir: &Path) -> Result<Vec<PodInfo>, String> {
    let path = dir.join(PODS_FILE);
    let text = std::fs::read(&path).map_err(|_| {
        format!(
            "no local mesh is running from {} (start one with `keel up` or `keel demo`, or pass --state-dir)",
            dir.display()
        )
    })?;
    serde_json::from_slice(&text).map_err(|e| format!("{} is unreadable: {e}", path.display()))
}

/// The pod `name` names: a pod (`reviews-v2-0`), a Deployment (`reviews-v2`: its first
/// replica) or an app (`reviews`: when only one Deployment's pods start with it... else an
/// error listing them), in `namespace` when given.
fn find<'a>(
    pods: &'a [PodInfo],
    name: &str,
    namespace: Option<&str>,
) -> Result<&'a PodInfo, String> {
    let name = name.strip_prefix("deploy/").unwrap_or(name);
    let (name, ns) = match name.split_once('.') {
        Some((n, ns)) if namespace.is_none() => (n, Some(ns)),
        _ => (name, namespace),
    };
    let here: Vec<&PodInfo> = pods
        .iter()
        .filter(|p| ns.is_none_or(|ns| p.namespace == ns))
        .collect();
    if let Some(p) = here.iter().find(|p| p.pod == name) {
        return Ok(p);
    }
    if let Some(p) = here.iter().find(|p| p.deployment == name) {
        return Ok(p);
    }
    let prefixed: Vec<&&PodInfo> = here.iter().filter(|p| p.pod.starts_with(name)).collect();
    let mut deployments: Vec<&str> = prefixed.iter().map(|p| p.deployment.as_str()).collect();
    deployments.dedup();
    match (prefixed.first(), deployments.len()) {
        (Some(p), 1) => Ok(p),
        (None, _) => Err(format!(
            "no workload \"{name}\" in the local mesh (it runs: {})",
            pods.iter()
                .map(|p| format!("{}.{}", p.pod, p.namespace))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => Err(format!(
            "\"{name}\" matches several workloads ({}); name one",
            deployments.join(", ")
        )),
    }
}

/// The mesh's state directory and the pod `workload` names there; the exit code on failure
/// (after saying why).
fn locate(
    state: &Option<PathBuf>,
    workload: &str,
    namespace: Option<&str>,
) -> Result<(PathBuf, PodInfo), u8> {
    let dir = state_dir(state)?;
    match read(&dir).and_then(|pods| find(&pods, workload, namespace).cloned()) {
        Ok(p) => Ok((dir, p)),
        Err(e) => {
            eprintln!("error: {e}");
            Err(exit::FAILURE)
        }
    }
}

/// `keel logs [-n NS] WORKLOAD [-c proxy] [-f]`.
pub fn run_logs(args: &LogsArgs) -> u8 {
    let (dir, pod) = match locate(&args.state_dir, &args.workload, args.namespace.as_deref()) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let file = match log_file(&pod, args.container.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILURE;
        }
    };
    let path = dir.join("logs").join(file);
    match print_log(&path, args.follow) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            exit::FAILURE
        }
    }
}

/// The log file of `container` in `pod`, as `kubectl logs -c` picks one: the first container
/// by default; `proxy` (or `istio-proxy`, `sidecar`) is the sidecar; `app` the first container
/// unless one is called so.
fn log_file(pod: &PodInfo, container: Option<&str>) -> Result<String, String> {
    let first = || {
        pod.containers
            .first()
            .map_or_else(|| format!("{}.log", pod.pod), |c| c.log.clone())
    };
    match container {
        None => Ok(first()),
        Some("proxy" | "istio-proxy" | "sidecar") if pod.sidecar => {
            Ok(format!("{}.proxy.log", pod.pod))
        }
        Some(name) => match pod.containers.iter().find(|c| c.name == name) {
            Some(c) => Ok(c.log.clone()),
            None if name == "app" => Ok(first()),
            None if matches!(name, "proxy" | "istio-proxy" | "sidecar") => {
                Err(format!("{} runs without a sidecar", pod.pod))
            }
            None => {
                let mut names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
                if pod.sidecar {
                    names.push("proxy");
                }
                Err(format!(
                    "{} has no container \"{name}\" (it has: {})",
                    pod.pod,
                    names.join(", ")
                ))
            }
        },
    }
}

fn print_log(path: &Path, follow: bool) -> std::io::Result<()> {
    let mut f = std::fs::File::open(path)?;
    let mut out = std::io::stdout();
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    if out.write_all(&buf).is_err() {
        return Ok(());
    }
    let _ = out.flush();
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let pos = f.stream_position()?;
        let len = f.metadata()?.len();
        if len < pos {
            // Truncated (a new mesh started): from the top.
            f.seek(SeekFrom::Start(0))?;
        }
        buf.clear();
        f.read_to_end(&mut buf)?;
        if !buf.is_empty() && (out.write_all(&buf).is_err() || out.flush().is_err()) {
            return Ok(());
        }
    }
}

/// `keel exec [-n NS] WORKLOAD -- CMD...`: runs CMD as the workload would call out: its
/// sidecar's outbound listener as `HTTP_PROXY`, so mesh names resolve and its policies and
/// metrics apply.
pub fn run_exec(args: &ExecArgs) -> u8 {
    let (_, pod) = match locate(&args.state_dir, &args.workload, args.namespace.as_deref()) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some((program, rest)) = args.command.split_first() else {
        eprintln!(
            "error: no command given: keel exec {} -- CMD...",
            args.workload
        );
        return exit::USAGE;
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest)
        .env("HOSTNAME", &pod.pod)
        .env("POD_NAMESPACE", &pod.namespace);
    if pod.sidecar {
        let proxy = format!("http://127.0.0.1:{}", pod.outbound_port);
        cmd.env("HTTP_PROXY", &proxy)
            .env("http_proxy", &proxy)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy");
    }
    match cmd.status() {
        Ok(s) => s
            .code()
            .map_or(exit::FAILURE, |c| u8::try_from(c).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: cannot run {program}: {e}");
            exit::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pod(name: &str, deployment: &str, ns: &str) -> PodInfo {
        PodInfo {
            pod: name.into(),
            namespace: ns.into(),
            deployment: deployment.into(),
            sidecar: true,
            app_port: 1,
            outbound_port: 2,
            admin_port: 3,
            sidecar_restarts: 0,
            containers: vec![
                ContainerInfo {
                    name: "main".into(),
                    log: format!("{name}.log"),
                    restarts: 0,
                },
                ContainerInfo {
                    name: "helper".into(),
                    log: format!("{name}.helper.log"),
                    restarts: 0,
                },
            ],
            ports: Vec::new(),
        }
    }

    #[test]
    fn logs_pick_the_first_container_by_default_and_proxy_is_the_sidecar() {
        let mut p = pod("tcp-echo-0", "tcp-echo", "default");
        assert_eq!(log_file(&p, None).unwrap(), "tcp-echo-0.log");
        assert_eq!(log_file(&p, Some("app")).unwrap(), "tcp-echo-0.log");
        assert_eq!(
            log_file(&p, Some("helper")).unwrap(),
            "tcp-echo-0.helper.log"
        );
        assert_eq!(log_file(&p, Some("proxy")).unwrap(), "tcp-echo-0.proxy.log");
        let e = log_file(&p, Some("nope")).unwrap_err();
        assert!(e.contains("it has: main, helper, proxy"), "{e}");
        p.sidecar = false;
        assert!(
            log_file(&p, Some("proxy"))
                .unwrap_err()
                .contains("without a sidecar")
        );
        // A pods.json from before containers were listed.
        p.containers.clear();
        assert_eq!(log_file(&p, None).unwrap(), "tcp-echo-0.log");
    }

    #[test]
    fn workloads_are_found_by_pod_deployment_or_a_unique_prefix() {
        let pods = vec![
            pod("reviews-v1-0", "reviews-v1", "default"),
            pod("reviews-v2-0", "reviews-v2", "default"),
            pod("reviews-v2-1", "reviews-v2", "default"),
            pod("sleep-0", "sleep", "default"),
            pod("sleep-0", "sleep", "legacy"),
        ];
        assert_eq!(
            find(&pods, "reviews-v2-1", None).unwrap().pod,
            "reviews-v2-1"
        );
        assert_eq!(find(&pods, "reviews-v2", None).unwrap().pod, "reviews-v2-0");
        assert_eq!(
            find(&pods, "deploy/reviews-v1", None).unwrap().pod,
            "reviews-v1-0"
        );
        assert!(
            find(&pods, "reviews", None)
                .unwrap_err()
                .contains("several")
        );
        assert_eq!(
            find(&pods, "sleep", Some("legacy")).unwrap().namespace,
            "legacy"
        );
        assert_eq!(
            find(&pods, "sleep.legacy", None).unwrap().namespace,
            "legacy"
        );
        assert!(
            find(&pods, "ratings", None)
                .unwrap_err()
                .contains("it runs:")
        );
    }
}
