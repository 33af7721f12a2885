//! `keel get KIND [NAME...]`: list stored resources as kubectl does.

use std::time::SystemTime;

use keel_config::Kind;
use keel_control::api::client::ClientError;
use serde_json::Value;

use super::{remote, table};
use crate::cli::{GetArgs, GetFormat};
use crate::exit;

pub fn run(args: &GetArgs) -> u8 {
    // kubectl's `get vs/reviews` form.
    let (kind_name, mut names) = match args.kind.split_once('/') {
        Some((k, n)) => (k.to_string(), vec![n.to_string()]),
        None => (args.kind.clone(), Vec::new()),
    };
    names.extend(args.names.iter().cloned());
    let Some(kind) = Kind::from_cli_name(&kind_name) else {
        eprintln!(
            "error: the server doesn't have a resource type \"{kind_name}\" (try vs, dr, gw, se, pa, ap, ra, svc, deploy, ns, sa, or a full kind name)"
        );
        return exit::FAILURE;
    };
    let namespaced = kind.info().namespaced;
    if args.all_namespaces && !names.is_empty() {
        eprintln!("error: a resource cannot be retrieved by name across all namespaces");
        return exit::FAILURE;
    }
    let all = args.all_namespaces;
    let namespace = match (&args.namespace, all || !namespaced) {
        (_, true) => None,
        (Some(ns), false) => Some(ns.clone()),
        (None, false) => Some("default".to_string()),
    };
    let client = match remote::client(&args.server.server) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let fetched = remote::block_on(async {
        let mut items = Vec::new();
        let mut missing = Vec::new();
        if names.is_empty() {
            let list = client.list(&kind_name, namespace.as_deref(), None).await?;
            items.extend(list_items(list));
        }
        for name in &names {
            match client
                .list(&kind_name, namespace.as_deref(), Some(name))
                .await
            {
                Ok(list) => items.extend(list_items(list)),
                Err(ClientError::Api { body, .. }) if body.reason == "NotFound" => {
                    missing.push(body.message)
                }
                Err(e) => return Err(e),
            }
        }
        Ok::<_, ClientError>((items, missing))
    });
    let (items, missing) = match fetched {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return remote::report(&e),
        Err(code) => return code,
    };
    // Named resources that are all missing print only the errors, as kubectl does.
    if !items.is_empty() || names.is_empty() {
        print(
            kind,
            &items,
            args,
            namespace.as_deref(),
            all,
            names.len() == 1,
        );
    }
    for m in &missing {
        eprintln!("Error from server (NotFound): {m}");
    }
    if missing.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    }
}

fn list_items(list: Value) -> Vec<Value> {
    match list {
        Value::Object(mut m) => match m.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn print(
    kind: Kind,
    items: &[Value],
    args: &GetArgs,
    namespace: Option<&str>,
    all: bool,
    single: bool,
) {
    match args.output {
        Some(GetFormat::Yaml) | Some(GetFormat::Json) => {
            let doc = match (single, items) {
                (true, [one]) => one.clone(),
                _ => serde_json::json!({
                    "apiVersion": "v1",
                    "items": items,
                    "kind": "List",
                    "metadata": { "resourceVersion": "" },
                }),
            };
            if args.output == Some(GetFormat::Yaml) {
                print!("{}", keel_control::emit::to_yaml(&doc));
            } else {
                println!("{}", to_json_4(&doc));
            }
        }
        Some(GetFormat::Name) => {
            for item in items {
                let name = item["metadata"]["name"].as_str().unwrap_or_default();
                println!(
                    "{}/{name}",
                    keel_control::store::ResourceKey::kubectl_kind(kind)
                );
            }
        }
        None | Some(GetFormat::Wide) if items.is_empty() => match namespace {
            Some(ns) if !all => eprintln!("No resources found in {ns} namespace."),
            _ => eprintln!("No resources found"),
        },
        None | Some(GetFormat::Wide) => {
            let wide = args.output == Some(GetFormat::Wide);
            let with_ns = all && kind.info().namespaced;
            print!(
                "{}",
                table::render(kind, items, wide, with_ns, SystemTime::now())
            );
        }
    }
}

/// JSON with four-space indentation, as `kubectl get -o json` prints it.
fn to_json_4(v: &Value) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    match serde::Serialize::serialize(v, &mut ser) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => v.to_string(),
    }
}
