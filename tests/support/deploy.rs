//! Reading the deployment files (docker-compose.yml, deploy/k8s, deploy/Dockerfile) the way
//! their tools do, and running kafkad under a deployed service's exact environment.
//!
//! YAML is read with `serde_norway` (a maintained fork of the archived `serde_yaml`). Compose
//! resolves merge keys (`<<: *anchor`) while loading, nested ones included; `serde_norway`
//! leaves them in place and its `Value::apply_merge` does not resolve a merge key that itself
//! arrives through a merge, so [`resolve_merges`] does it the way Compose does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde::Deserialize;
use serde_norway::{Mapping, Value};

/// The six kafkad services of docker-compose.yml and their roles.
pub const KAFKAD_SERVICES: [(&str, &str); 6] = [
    ("producer-1", "producer"),
    ("producer-2", "producer"),
    ("single-1", "single"),
    ("single-2", "single"),
    ("batch-1", "batch"),
    ("batch-2", "batch"),
];
pub const BROKERS: [&str; 3] = ["kafka-0", "kafka-1", "kafka-2"];
pub const ROLES: [&str; 3] = ["producer", "single", "batch"];
/// Where the image puts config/ (deploy/Dockerfile) and the pods mount the ConfigMap.
pub const CONFIG_DIR_IN_IMAGE: &str = "/etc/kafkad/";
pub const IMAGE: &str = "kafkad:latest";
/// The uid of the runtime image's USER and of the pods' runAsUser.
pub const KAFKAD_UID: i64 = 10001;
/// The HTTP endpoint's default `[http] listen` port.
pub const HTTP_PORT: i64 = 9464;

// ---- helpers --------------------------------------------------------------------------------

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// Every document of a YAML text, with merge keys resolved.
pub fn parse_yaml(text: &str, what: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|document| {
            let mut value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{what}: invalid YAML: {e}"));
            resolve_merges(&mut value);
            value
        })
        .collect()
}

/// Applies YAML merge keys as Compose (go-yaml) does: keys written in a mapping win over merged
/// ones, earlier maps of a `<<: [*a, *b]` list win over later ones, and a merged map's own
/// merge keys are resolved before it is merged.
pub fn resolve_merges(value: &mut Value) {
    match value {
        Value::Mapping(mapping) => {
            if let Some(mut merged) = mapping.remove("<<") {
                resolve_merges(&mut merged);
                let sources = match merged {
                    Value::Mapping(source) => vec![source],
                    Value::Sequence(items) => items
                        .into_iter()
                        .map(|item| match item {
                            Value::Mapping(source) => source,
                            other => panic!("a merge list holds a non-mapping: {other:?}"),
                        })
                        .collect(),
                    other => panic!("`<<` merges a non-mapping: {other:?}"),
                };
                for source in sources {
                    for (key, item) in source {
                        mapping.entry(key).or_insert(item);
                    }
                }
            }
            for item in mapping.values_mut() {
                resolve_merges(item);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(resolve_merges),
        Value::Tagged(tagged) => resolve_merges(&mut tagged.value),
        _ => {}
    }
}

/// `value[a][b]...`, or a panic naming the missing path.
pub fn at<'v>(value: &'v Value, path: &[&str]) -> &'v Value {
    let mut current = value;
    for (depth, key) in path.iter().enumerate() {
        current = current
            .get(*key)
            .unwrap_or_else(|| panic!("missing `{}`", path[..=depth].join(".")));
    }
    current
}

pub fn text<'v>(value: &'v Value, path: &[&str]) -> &'v str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("`{}` is not a string", path.join(".")))
}

pub fn int(value: &Value, path: &[&str]) -> i64 {
    at(value, path)
        .as_i64()
        .unwrap_or_else(|| panic!("`{}` is not an integer", path.join(".")))
}

pub fn mapping<'v>(value: &'v Value, path: &[&str]) -> &'v Mapping {
    at(value, path)
        .as_mapping()
        .unwrap_or_else(|| panic!("`{}` is not a mapping", path.join(".")))
}

pub fn seq<'v>(value: &'v Value, path: &[&str]) -> &'v [Value] {
    at(value, path)
        .as_sequence()
        .unwrap_or_else(|| panic!("`{}` is not a list", path.join(".")))
}

pub fn strings(value: &Value, path: &[&str]) -> Vec<String> {
    seq(value, path)
        .iter()
        .map(|item| scalar(item).unwrap_or_else(|| panic!("`{}`: {item:?}", path.join("."))))
        .collect()
}

/// A scalar as the string a process sees in its environment.
pub fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn key_names(mapping: &Mapping) -> BTreeSet<String> {
    mapping
        .keys()
        .map(|k| k.as_str().expect("string keys").to_owned())
        .collect()
}

pub fn set<const N: usize>(items: [&str; N]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Runs kafkad with exactly `env` as its environment (nothing inherited) from the repository
/// root.
pub fn kafkad(args: &[&str], env: &BTreeMap<String, String>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kafkad"))
        .args(args)
        .current_dir(root())
        .env_clear()
        .envs(env)
        .output()
        .expect("kafkad runs")
}

/// A deployed environment made runnable here: `KAFKAD_CONFIG=/etc/kafkad/x.toml` (the image's
/// or the ConfigMap's copy) becomes the repository's `config/x.toml`.
pub fn local_env(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = env.clone();
    if let Some(path) = env.get_mut("KAFKAD_CONFIG") {
        let file = path
            .strip_prefix(CONFIG_DIR_IN_IMAGE)
            .unwrap_or_else(|| panic!("KAFKAD_CONFIG={path} is not under {CONFIG_DIR_IN_IMAGE}"));
        assert!(
            root().join("config").join(file).is_file(),
            "KAFKAD_CONFIG={path}: config/{file} does not exist"
        );
        *path = format!("config/{file}");
    }
    env
}

/// `kafkad config check` under `env` must exit 0; returns `kafkad config print`'s output.
pub fn assert_config_valid(what: &str, args: &[&str], env: &BTreeMap<String, String>) -> String {
    let env = local_env(env);
    let check: Vec<&str> = ["config", "check"].iter().chain(args).copied().collect();
    let output = kafkad(&check, &env);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{what}: `kafkad {}` with {env:?}: {}",
        check.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    let print: Vec<&str> = ["config", "print"].iter().chain(args).copied().collect();
    let output = kafkad(&print, &env);
    assert_eq!(output.status.code(), Some(0), "{what}: config print");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The value of `key = value` in `config print` output (quotes removed).
pub fn printed(print: &str, key: &str) -> String {
    let prefix = format!("{key} = ");
    let line = print
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{key}` in config print:\n{print}"));
    let value = line[prefix.len()..].split(" #").next().unwrap().trim();
    value.trim_matches('"').to_owned()
}

/// The effective shutdown_timeout of a process, read from `config print`.
pub fn shutdown_timeout(print: &str) -> Duration {
    humantime::parse_duration(&printed(print, "shutdown_timeout")).expect("a duration")
}

// ---- docker-compose.yml ---------------------------------------------------------------------

pub fn compose() -> Value {
    let mut documents = parse_yaml(&read("docker-compose.yml"), "docker-compose.yml");
    assert_eq!(documents.len(), 1, "docker-compose.yml is one document");
    documents.remove(0)
}

pub fn service<'c>(compose: &'c Value, name: &str) -> &'c Value {
    at(compose, &["services", name])
}

/// A service's `environment`, in either Compose form (mapping or `KEY=VALUE` list).
pub fn compose_env(service: &Value) -> BTreeMap<String, String> {
    let Some(environment) = service.get("environment") else {
        return BTreeMap::new();
    };
    match environment {
        Value::Mapping(map) => map
            .iter()
            .map(|(k, v)| {
                let key = k.as_str().expect("string keys").to_owned();
                let value = scalar(v).unwrap_or_else(|| panic!("{key} has no value: {v:?}"));
                (key, value)
            })
            .collect(),
        Value::Sequence(items) => items
            .iter()
            .map(|item| {
                let line = item.as_str().expect("KEY=VALUE");
                let (k, v) = line.split_once('=').expect("KEY=VALUE");
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        other => panic!("environment is neither a mapping nor a list: {other:?}"),
    }
}

/// `depends_on` as service -> condition.
pub fn depends_on(service: &Value) -> BTreeMap<String, String> {
    match service.get("depends_on") {
        None => BTreeMap::new(),
        Some(Value::Mapping(map)) => map
            .iter()
            .map(|(k, v)| {
                let name = k.as_str().unwrap().to_owned();
                (name, text(v, &["condition"]).to_owned())
            })
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| (item.as_str().unwrap().to_owned(), "service_started".into()))
            .collect(),
        Some(other) => panic!("depends_on: {other:?}"),
    }
}
