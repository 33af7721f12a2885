//! Container image → local command: the built-in sample images, `--run IMAGE=COMMAND`, and the
//! pod-template annotations `keel.dev/run` (the first container) and `keel.dev/run.CONTAINER`.

/// The pod-template annotation that names the local command for a workload's first container;
/// `keel.dev/run.CONTAINER` names one container's.
pub const RUN_ANNOTATION: &str = "keel.dev/run";

/// A `keel-sample` argument standing for the container's `PORT`.
pub const PORT_ARG: &str = "$PORT";

/// The prefix of a `keel-sample` argument that is a list of the pod's ports (tcp-echo's
/// `9000,9001,9002`); see [`expand_arg`].
const PORT_LIST_ARG: &str = "$PORTS=";

/// A `keel-sample` argument with the local ports in: [`PORT_ARG`] becomes `port`, and each
/// port of a port list that `local` knows (a declared `containerPort`) becomes its local port.
/// The others are left out: a fixed port would collide between replicas, and no Service can
/// reach a port the pod doesn't declare. A list left empty becomes `port`.
pub fn expand_arg(arg: &str, port: Option<u16>, local: impl Fn(u16) -> Option<u16>) -> String {
    let port = port.map(|p| p.to_string()).unwrap_or_default();
    if arg == PORT_ARG {
        return port;
    }
    let Some(list) = arg.strip_prefix(PORT_LIST_ARG) else {
        return arg.to_string();
    };
    let mapped: Vec<String> = list
        .split(',')
        .filter_map(|p| p.trim().parse::<u16>().ok())
        .filter_map(&local)
        .map(|p| p.to_string())
        .collect();
    if mapped.is_empty() {
        port
    } else {
        mapped.join(",")
    }
}

/// What to run in place of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// `keel-sample` with these arguments.
    Sample(Vec<String>),
    /// A shell command line (`sh -c`).
    Shell(String),
}

/// A container's local command and the environment its image would set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCommand {
    pub program: Program,
    pub env: Vec<(String, String)>,
}

/// `IMAGE=COMMAND` of `--run`.
pub fn parse_run(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((image, command)) if !image.is_empty() && !command.trim().is_empty() => {
            Ok((image.to_string(), command.to_string()))
        }
        _ => Err(format!("\"{s}\" is not IMAGE=COMMAND")),
    }
}

/// The image's repository without registry and tag, and its tag.
fn split_image(image: &str) -> (&str, &str) {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((name, tag)) => (name, tag),
        None => (last, ""),
    }
}

/// The image without its tag (and digest), for `--run` matching.
fn untagged(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// Maps a container to a local command: the annotation first, then `--run` (by exact image or
/// image without tag), then the built-in samples.
pub fn map_image(
    image: &str,
    annotation: Option<&str>,
    runs: &[(String, String)],
    args: &[String],
) -> Result<AppCommand, String> {
    if let Some(cmd) = annotation.filter(|c| !c.trim().is_empty()) {
        return Ok(AppCommand {
            program: Program::Shell(cmd.to_string()),
            env: Vec::new(),
        });
    }
    if let Some((_, cmd)) = runs
        .iter()
        .find(|(i, _)| i == image)
        .or_else(|| runs.iter().find(|(i, _)| untagged(i) == untagged(image)))
    {
        return Ok(AppCommand {
            program: Program::Shell(cmd.clone()),
            env: Vec::new(),
        });
    }
    builtin(image, args).ok_or_else(|| {
        format!(
            "no local command for image \"{image}\": Keel runs Istio's sample images itself \
(examples-bookinfo-*, httpbin, sleep/curl, tcp-echo); for anything else add the pod-template \
annotation {RUN_ANNOTATION}: \"COMMAND\" ({RUN_ANNOTATION}.CONTAINER for a container after the first) \
or pass --run {}=COMMAND (the app listens on $PORT, or $PORT_<containerPort> for each port)",
            untagged(image)
        )
    })
}

fn sample(args: &[&str], env: &[(&str, &str)]) -> AppCommand {
    AppCommand {
        program: Program::Sample(args.iter().map(|s| s.to_string()).collect()),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn builtin(image: &str, args: &[String]) -> Option<AppCommand> {
    let (name, _tag) = split_image(image);
    if let Some(rest) = name.strip_prefix("examples-bookinfo-") {
        let (app, version) = rest.rsplit_once('-').unwrap_or((rest, "v1"));
        return match app {
            "productpage" => Some(sample(&["productpage"], &[])),
            "details" => Some(sample(&["details"], &[])),
            // As Istio's reviews images are built (ENABLE_RATINGS, STAR_COLOR per version).
            "reviews" => Some(match version {
                "v1" => sample(
                    &["reviews"],
                    &[("SERVICE_VERSION", "v1"), ("ENABLE_RATINGS", "false")],
                ),
                "v2" => sample(
                    &["reviews"],
                    &[
                        ("SERVICE_VERSION", "v2"),
                        ("ENABLE_RATINGS", "true"),
                        ("STAR_COLOR", "black"),
                    ],
                ),
                "v3" => sample(
                    &["reviews"],
                    &[
                        ("SERVICE_VERSION", "v3"),
                        ("ENABLE_RATINGS", "true"),
                        ("STAR_COLOR", "red"),
                    ],
                ),
                _ => return None,
            }),
            "ratings" => Some(sample(&["ratings"], &[("SERVICE_VERSION", version)])),
            _ => None,
        };
    }
    match name {
        "httpbin" | "go-httpbin" => Some(sample(&["httpbin"], &[])),
        "curl" | "sleep" => Some(sample(&["sleep"], &[])),
        "tcp-echo-server" | "tcp-echo" => {
            // Istio's tcp-echo takes "PORTS PREFIX"; each declared port becomes its local one.
            let ports = args
                .first()
                .map_or_else(|| PORT_ARG.to_string(), |l| format!("{PORT_LIST_ARG}{l}"));
            let prefix = args.get(1).cloned().unwrap_or_else(|| "hello".into());
            Some(AppCommand {
                program: Program::Sample(vec!["tcp-echo".into(), ports, prefix]),
                env: Vec::new(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn env(c: &AppCommand, k: &str) -> Option<String> {
        c.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn bookinfo_images_map_to_the_samples_with_the_image_env() {
        let c = map_image(
            "docker.io/istio/examples-bookinfo-reviews-v3:1.20.2",
            None,
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(c.program, Program::Sample(vec!["reviews".into()]));
        assert_eq!(env(&c, "STAR_COLOR").as_deref(), Some("red"));
        assert_eq!(env(&c, "SERVICE_VERSION").as_deref(), Some("v3"));
        let c = map_image("istio/examples-bookinfo-reviews-v1:1", None, &[], &[]).unwrap();
        assert_eq!(env(&c, "ENABLE_RATINGS").as_deref(), Some("false"));
        let c = map_image(
            "docker.io/istio/examples-bookinfo-productpage-v1:1.20",
            None,
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(c.program, Program::Sample(vec!["productpage".into()]));
        let c = map_image(
            "docker.io/istio/examples-bookinfo-ratings-v1:1",
            None,
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(env(&c, "SERVICE_VERSION").as_deref(), Some("v1"));
    }

    #[test]
    fn httpbin_sleep_and_tcp_echo() {
        for i in [
            "docker.io/mccutchen/go-httpbin:v2.15.0",
            "docker.io/kennethreitz/httpbin",
        ] {
            assert_eq!(
                map_image(i, None, &[], &[]).unwrap().program,
                Program::Sample(vec!["httpbin".into()])
            );
        }
        assert_eq!(
            map_image("curlimages/curl", None, &[], &[])
                .unwrap()
                .program,
            Program::Sample(vec!["sleep".into()])
        );
        let args = vec!["9000,9001,9002".to_string(), "hi".to_string()];
        let Program::Sample(args) =
            map_image("docker.io/istio/tcp-echo-server:1.3", None, &[], &args)
                .unwrap()
                .program
        else {
            panic!("a sample");
        };
        assert_eq!(args[0], "tcp-echo");
        assert_eq!(args[2], "hi");
        // 9000 and 9001 are declared container ports; 9002 is not.
        let local = |p: u16| {
            [(9000, 41000), (9001, 41001)]
                .into_iter()
                .find(|(c, _)| *c == p)
                .map(|(_, l)| l)
        };
        assert_eq!(expand_arg(&args[1], Some(41000), local), "41000,41001");
        assert_eq!(expand_arg("$PORTS=9002", Some(41000), local), "41000");
        assert_eq!(expand_arg(PORT_ARG, Some(41000), local), "41000");
        assert_eq!(expand_arg("hi", Some(41000), local), "hi");
        let Program::Sample(args) = map_image("istio/tcp-echo-server", None, &[], &[])
            .unwrap()
            .program
        else {
            panic!("a sample");
        };
        assert_eq!(args, ["tcp-echo", PORT_ARG, "hello"]);
    }

    #[test]
    fn annotation_then_run_flag_then_builtin_and_a_clear_error() {
        let runs = vec![(
            "example/app".to_string(),
            "python3 -m http.server $PORT".to_string(),
        )];
        assert_eq!(
            map_image("example/app:2", None, &runs, &[])
                .unwrap()
                .program,
            Program::Shell("python3 -m http.server $PORT".into())
        );
        assert_eq!(
            map_image("example/app:2", Some("./serve"), &runs, &[])
                .unwrap()
                .program,
            Program::Shell("./serve".into())
        );
        let e = map_image("nginx:1.25", None, &runs, &[]).unwrap_err();
        assert!(e.contains("--run nginx=COMMAND"), "{e}");
        assert!(e.contains(RUN_ANNOTATION), "{e}");
        assert!(parse_run("nginx").is_err());
        assert_eq!(
            parse_run("nginx:1=nginx -g x=y").unwrap(),
            ("nginx:1".into(), "nginx -g x=y".into())
        );
    }
}
