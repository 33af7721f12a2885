//! Container image → local command: the built-in sample images, `--run IMAGE=COMMAND`, and the
//! pod-template annotation `keel.dev/run`.

/// The pod-template annotation that names the local command for a workload's container.
pub const RUN_ANNOTATION: &str = "keel.dev/run";

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
annotation {RUN_ANNOTATION}: \"COMMAND\" or pass --run {}=COMMAND (the app listens on $PORT)",
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
            // Istio's tcp-echo takes "PORTS PREFIX"; the ports are replaced by the assigned one.
            let prefix = args.get(1).cloned().unwrap_or_else(|| "hello".into());
            Some(AppCommand {
                program: Program::Sample(vec!["tcp-echo".into(), "$PORT".into(), prefix]),
                env: Vec::new(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
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
        let args = vec!["9000,9001".to_string(), "hi".to_string()];
        assert_eq!(
            map_image("docker.io/istio/tcp-echo-server:1.3", None, &[], &args)
                .unwrap()
                .program,
            Program::Sample(vec!["tcp-echo".into(), "$PORT".into(), "hi".into()])
        );
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
