//! Running kafkad for real: `docker-compose.yml`, `deploy/k8s/` and `deploy/Dockerfile`, parsed
//! and held to the seed topology. No Docker engine or cluster is needed: the topology is read
//! from the files, and every kafkad service's exact environment goes through
//! `kafkad config check` (and `config print`, to see the values took effect).
//!
//! YAML is read with `serde_norway` (a maintained fork of the archived `serde_yaml`). Compose
//! resolves merge keys (`<<: *anchor`) while loading, nested ones included; `serde_norway`
//! leaves them in place and its `Value::apply_merge` does not resolve a merge key that itself
//! arrives through a merge, so [`resolve_merges`] does it the way Compose does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde::Deserialize;
use serde_norway::{Mapping, Value};

/// The six kafkad services of docker-compose.yml and their roles.
const KAFKAD_SERVICES: [(&str, &str); 6] = [
    ("producer-1", "producer"),
    ("producer-2", "producer"),
    ("single-1", "single"),
    ("single-2", "single"),
    ("batch-1", "batch"),
    ("batch-2", "batch"),
];
const BROKERS: [&str; 3] = ["kafka-0", "kafka-1", "kafka-2"];
const ROLES: [&str; 3] = ["producer", "single", "batch"];
/// Where the image puts config/ (deploy/Dockerfile) and the pods mount the ConfigMap.
const CONFIG_DIR_IN_IMAGE: &str = "/etc/kafkad/";
const IMAGE: &str = "kafkad:latest";
/// The uid of the runtime image's USER and of the pods' runAsUser.
const KAFKAD_UID: i64 = 10001;
/// The HTTP endpoint's default `[http] listen` port.
const HTTP_PORT: i64 = 9464;

// ---- helpers --------------------------------------------------------------------------------

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// Every document of a YAML text, with merge keys resolved.
fn parse_yaml(text: &str, what: &str) -> Vec<Value> {
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
fn resolve_merges(value: &mut Value) {
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
fn at<'v>(value: &'v Value, path: &[&str]) -> &'v Value {
    let mut current = value;
    for (depth, key) in path.iter().enumerate() {
        current = current
            .get(*key)
            .unwrap_or_else(|| panic!("missing `{}`", path[..=depth].join(".")));
    }
    current
}

fn text<'v>(value: &'v Value, path: &[&str]) -> &'v str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("`{}` is not a string", path.join(".")))
}

fn int(value: &Value, path: &[&str]) -> i64 {
    at(value, path)
        .as_i64()
        .unwrap_or_else(|| panic!("`{}` is not an integer", path.join(".")))
}

fn mapping<'v>(value: &'v Value, path: &[&str]) -> &'v Mapping {
    at(value, path)
        .as_mapping()
        .unwrap_or_else(|| panic!("`{}` is not a mapping", path.join(".")))
}

fn seq<'v>(value: &'v Value, path: &[&str]) -> &'v [Value] {
    at(value, path)
        .as_sequence()
        .unwrap_or_else(|| panic!("`{}` is not a list", path.join(".")))
}

fn strings(value: &Value, path: &[&str]) -> Vec<String> {
    seq(value, path)
        .iter()
        .map(|item| scalar(item).unwrap_or_else(|| panic!("`{}`: {item:?}", path.join("."))))
        .collect()
}

/// A scalar as the string a process sees in its environment.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn key_names(mapping: &Mapping) -> BTreeSet<String> {
    mapping
        .keys()
        .map(|k| k.as_str().expect("string keys").to_owned())
        .collect()
}

fn set<const N: usize>(items: [&str; N]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Runs kafkad with exactly `env` as its environment (nothing inherited) from the repository
/// root.
fn kafkad(args: &[&str], env: &BTreeMap<String, String>) -> Output {
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
fn local_env(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
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
fn assert_config_valid(what: &str, args: &[&str], env: &BTreeMap<String, String>) -> String {
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
fn printed(print: &str, key: &str) -> String {
    let prefix = format!("{key} = ");
    let line = print
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{key}` in config print:\n{print}"));
    let value = line[prefix.len()..].split(" #").next().unwrap().trim();
    value.trim_matches('"').to_owned()
}

/// The effective shutdown_timeout of a process, read from `config print`.
fn shutdown_timeout(print: &str) -> Duration {
    humantime::parse_duration(&printed(print, "shutdown_timeout")).expect("a duration")
}

// ---- docker-compose.yml ---------------------------------------------------------------------

fn compose() -> Value {
    let mut documents = parse_yaml(&read("docker-compose.yml"), "docker-compose.yml");
    assert_eq!(documents.len(), 1, "docker-compose.yml is one document");
    documents.remove(0)
}

fn service<'c>(compose: &'c Value, name: &str) -> &'c Value {
    at(compose, &["services", name])
}

/// A service's `environment`, in either Compose form (mapping or `KEY=VALUE` list).
fn compose_env(service: &Value) -> BTreeMap<String, String> {
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
fn depends_on(service: &Value) -> BTreeMap<String, String> {
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

#[test]
fn yaml_merge_keys_resolve_like_compose_including_nested_ones() {
    let yaml = "
base: &base {image: a, restart: always}
middle: &middle
  <<: *base
  healthcheck: {test: [CMD, true]}
extra: &extra {restart: never, user: x}
service:
  <<: *middle
  image: b
listed:
  <<: [*extra, *base]
";
    let doc = parse_yaml(yaml, "example").remove(0);
    let service = at(&doc, &["service"]);
    assert_eq!(text(service, &["image"]), "b", "written keys win");
    assert_eq!(
        text(service, &["restart"]),
        "always",
        "nested merge applied"
    );
    assert!(service.get("healthcheck").is_some());
    assert!(service.get("<<").is_none(), "no merge key left");
    let listed = at(&doc, &["listed"]);
    assert_eq!(text(listed, &["restart"]), "never", "earlier map wins");
    assert_eq!(text(listed, &["image"]), "a");
    assert_eq!(text(listed, &["user"]), "x");
}

#[test]
fn compose_follows_the_compose_specification_with_the_seed_services() {
    let compose = compose();
    assert!(
        compose.get("version").is_none(),
        "the Compose Specification has no top-level `version`"
    );
    let mut expected = set(BROKERS);
    expected.extend(set(["topic-init", "kafka-ui"]));
    expected.extend(KAFKAD_SERVICES.iter().map(|(name, _)| name.to_string()));
    assert_eq!(key_names(mapping(&compose, &["services"])), expected);
}

#[test]
fn compose_brokers_form_one_kraft_cluster_of_three() {
    let compose = compose();
    let mut node_ids = BTreeSet::new();
    let mut cluster_ids = BTreeSet::new();
    let expected_voters = "0@kafka-0:9093,1@kafka-1:9093,2@kafka-2:9093";
    for (index, broker) in BROKERS.iter().enumerate() {
        let service = service(&compose, broker);
        assert!(
            text(service, &["image"]).starts_with("apache/kafka:"),
            "{broker}"
        );
        let env = compose_env(service);
        let var = |name: &str| {
            env.get(name)
                .unwrap_or_else(|| panic!("{broker}: {name} is not set"))
                .as_str()
        };
        let roles: BTreeSet<&str> = var("KAFKA_PROCESS_ROLES").split(',').collect();
        assert_eq!(roles, BTreeSet::from(["broker", "controller"]), "{broker}");
        let node_id: i64 = var("KAFKA_NODE_ID").parse().expect("numeric node id");
        assert_eq!(node_id, index as i64, "{broker}");
        node_ids.insert(node_id);
        cluster_ids.insert(var("CLUSTER_ID").to_owned());

        // The voters name all three brokers, this one under its own node id.
        assert_eq!(var("KAFKA_CONTROLLER_QUORUM_VOTERS"), expected_voters);
        assert!(var("KAFKA_CONTROLLER_QUORUM_VOTERS")
            .split(',')
            .any(|voter| voter == format!("{node_id}@{broker}:9093")));
        assert_eq!(var("KAFKA_CONTROLLER_LISTENER_NAMES"), "CONTROLLER");

        // Internal listener for the network, host listener on 2909x published as is.
        let host_port = 29092 + index;
        let listeners: BTreeSet<&str> = var("KAFKA_LISTENERS").split(',').collect();
        let expected = format!("PLAINTEXT://:9092,CONTROLLER://:9093,EXTERNAL://:{host_port}");
        assert_eq!(listeners, expected.split(',').collect(), "{broker}");
        let advertised: BTreeSet<&str> = var("KAFKA_ADVERTISED_LISTENERS").split(',').collect();
        let expected = format!("PLAINTEXT://{broker}:9092,EXTERNAL://localhost:{host_port}");
        assert_eq!(advertised, expected.split(',').collect(), "{broker}");
        assert_eq!(
            strings(service, &["ports"]),
            vec![format!("{host_port}:{host_port}")],
            "{broker}"
        );

        let health = strings(service, &["healthcheck", "test"]).join(" ");
        assert!(
            health.contains("kafka-broker-api-versions.sh --bootstrap-server localhost:9092"),
            "{broker}: {health}"
        );
        assert!(depends_on(service).is_empty(), "{broker} starts first");
    }
    assert_eq!(node_ids, BTreeSet::from([0, 1, 2]), "distinct node ids");
    assert_eq!(cluster_ids.len(), 1, "one cluster id: {cluster_ids:?}");
    // A KRaft cluster id is 16 bytes in URL-safe base64 without padding.
    let id = cluster_ids.first().unwrap();
    assert_eq!(id.len(), 22, "{id}");
    assert!(id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
}

#[test]
fn compose_runs_six_kafkad_services_from_one_image_differing_only_in_environment() {
    let compose = compose();
    let first = service(&compose, KAFKAD_SERVICES[0].0);
    let without_env = |service: &Value| {
        let mut map = service.as_mapping().unwrap().clone();
        map.remove("environment");
        map
    };
    let mut per_role: BTreeMap<String, usize> = BTreeMap::new();
    let mut producer_ids = BTreeSet::new();
    for (name, role) in KAFKAD_SERVICES {
        let service = service(&compose, name);
        assert_eq!(text(service, &["image"]), IMAGE, "{name}");
        assert_eq!(text(service, &["build", "context"]), ".", "{name}");
        assert_eq!(
            text(service, &["build", "dockerfile"]),
            "deploy/Dockerfile",
            "{name}"
        );
        assert_eq!(without_env(service), without_env(first), "{name}");

        let env = compose_env(service);
        assert_eq!(env["KAFKAD_ROLE"], role, "{name}");
        *per_role.entry(env["KAFKAD_ROLE"].clone()).or_default() += 1;
        assert_eq!(
            env["KAFKAD_CONFIG"],
            format!("/etc/kafkad/{role}.toml"),
            "{name}"
        );
        assert_eq!(
            env["KAFKAD_KAFKA__BOOTSTRAP_SERVERS"], "kafka-0:9092,kafka-1:9092,kafka-2:9092",
            "{name}"
        );
        assert!(
            !env.keys().any(|k| k.starts_with("KAFKAD_HTTP__")),
            "{name}: the HTTP endpoint keeps its default port"
        );
        if role == "producer" {
            assert_eq!(env["KAFKAD_PRODUCER__PRODUCER_ID"], name);
            producer_ids.insert(env["KAFKAD_PRODUCER__PRODUCER_ID"].clone());
            let rate: f64 = env["KAFKAD_PRODUCER__RATE"].parse().expect("a rate");
            assert!(
                rate > 0.0 && rate <= 100.0,
                "{name}: a modest rate, got {rate}"
            );
        } else {
            assert!(!env.contains_key("KAFKAD_PRODUCER__PRODUCER_ID"), "{name}");
        }
    }
    assert_eq!(
        per_role,
        ROLES.iter().map(|r| (r.to_string(), 2)).collect(),
        "two services per role"
    );
    assert_eq!(producer_ids.len(), 2, "distinct producer ids");

    // The bootstrap list is exactly the brokers' internal advertised listeners.
    let advertised: BTreeSet<String> = BROKERS
        .iter()
        .flat_map(|broker| {
            let env = compose_env(service(&compose, broker));
            env["KAFKA_ADVERTISED_LISTENERS"]
                .split(',')
                .filter_map(|l| l.strip_prefix("PLAINTEXT://").map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    let bootstrap = compose_env(first)["KAFKAD_KAFKA__BOOTSTRAP_SERVERS"].clone();
    assert_eq!(
        bootstrap
            .split(',')
            .map(str::to_owned)
            .collect::<BTreeSet<_>>(),
        advertised
    );
}

#[test]
fn compose_starts_brokers_then_topic_init_then_the_roles() {
    let compose = compose();
    let init = service(&compose, "topic-init");
    let healthy: BTreeMap<String, String> = BROKERS
        .iter()
        .map(|b| (b.to_string(), "service_healthy".to_owned()))
        .collect();
    assert_eq!(
        depends_on(init),
        healthy,
        "topic-init waits for healthy brokers"
    );
    for broker in BROKERS {
        assert!(
            service(&compose, broker).get("healthcheck").is_some(),
            "{broker}"
        );
    }
    assert_eq!(text(init, &["restart"]), "no", "topic-init runs once");
    assert_eq!(strings(init, &["command"]), ["topic", "ensure"]);
    assert_eq!(text(init, &["image"]), IMAGE);
    let env = compose_env(init);
    assert_eq!(env["KAFKAD_TOPIC__PARTITIONS"], "3");
    assert_eq!(env["KAFKAD_TOPIC__REPLICATION_FACTOR"], "2");
    assert!(!env.contains_key("KAFKAD_ROLE"), "topic-init runs no role");

    for (name, _) in KAFKAD_SERVICES {
        assert_eq!(
            depends_on(service(&compose, name)),
            BTreeMap::from([(
                "topic-init".to_owned(),
                "service_completed_successfully".to_owned()
            )]),
            "{name} starts after topic-init succeeded"
        );
    }
    let ui = service(&compose, "kafka-ui");
    assert!(text(ui, &["image"]).starts_with("kafbat/kafka-ui"));
    assert_eq!(depends_on(ui), healthy);
    assert_eq!(strings(ui, &["ports"]), ["8080:8080"]);
}

#[test]
fn compose_roles_restart_report_health_and_outwait_shutdown_timeout() {
    let compose = compose();
    for (name, _) in KAFKAD_SERVICES {
        let service = service(&compose, name);
        assert_eq!(text(service, &["restart"]), "unless-stopped", "{name}");
        let health = strings(service, &["healthcheck", "test"]);
        assert_eq!(health[0], "CMD", "{name}: exec form, no shell needed");
        assert_eq!(health[1], "curl", "{name}: the runtime image installs curl");
        assert_eq!(
            health.last().unwrap(),
            &format!("http://127.0.0.1:{HTTP_PORT}/healthz"),
            "{name}"
        );
        let print = assert_config_valid(name, &[], &compose_env(service));
        let grace =
            humantime::parse_duration(text(service, &["stop_grace_period"])).expect("duration");
        assert!(
            grace > shutdown_timeout(&print),
            "{name}: stop_grace_period {grace:?} must exceed shutdown_timeout {:?}",
            shutdown_timeout(&print)
        );
    }
}

#[test]
fn every_compose_kafkad_service_passes_config_check_under_its_environment() {
    let compose = compose();
    for (name, role) in KAFKAD_SERVICES {
        let env = compose_env(service(&compose, name));
        let print = assert_config_valid(name, &[], &env);
        // The environment took effect over the file's localhost default.
        assert_eq!(printed(&print, "role"), role, "{name}");
        assert_eq!(
            printed(&print, "\"bootstrap.servers\""),
            "kafka-0:9092,kafka-1:9092,kafka-2:9092",
            "{name}"
        );
        if role == "producer" {
            assert_eq!(printed(&print, "producer_id"), name);
        }
    }
    // `config check` needs a role and topic-init has none (`topic ensure` runs without one), so
    // its environment is checked under the producer's defaults.
    let env = compose_env(service(&compose, "topic-init"));
    let print = assert_config_valid("topic-init", &["--role", "producer"], &env);
    assert_eq!(printed(&print, "partitions"), "3");
    assert_eq!(printed(&print, "replication_factor"), "2");
    assert_eq!(printed(&print, "name"), "andrew-topic");
}

/// `docker compose` (v2) where it is installed, else `docker-compose`; `None` where neither is.
fn compose_cli() -> Option<Vec<&'static str>> {
    [vec!["docker", "compose"], vec!["docker-compose"]]
        .into_iter()
        .find(|cli| {
            Command::new(cli[0])
                .args(&cli[1..])
                .arg("version")
                .output()
                .is_ok_and(|output| output.status.success())
        })
}

#[test]
fn compose_file_is_accepted_by_docker_compose_config_where_installed() {
    let Some(cli) = compose_cli() else {
        eprintln!("no docker compose here: the static checks above still hold");
        return;
    };
    let output = Command::new(cli[0])
        .args(&cli[1..])
        .args(["config", "--services"])
        .current_dir(root())
        .output()
        .expect("docker compose runs");
    assert!(
        output.status.success(),
        "{} config: {}",
        cli.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    let services: BTreeSet<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(services, key_names(mapping(&compose(), &["services"])));
}

// ---- deploy/k8s -----------------------------------------------------------------------------

const K8S: &str = "deploy/k8s";

/// Every object of deploy/k8s/*.yaml as (file, object).
fn k8s_objects() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(K8S))
        .expect("deploy/k8s exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(path).unwrap();
            parse_yaml(&text, &name)
                .into_iter()
                .map(move |doc| (name.clone(), doc))
        })
        .collect()
}

fn k8s_object(kind: &str, name: &str) -> Value {
    k8s_objects()
        .into_iter()
        .map(|(_, object)| object)
        .find(|o| {
            o.get("kind").and_then(Value::as_str) == Some(kind) && o["metadata"]["name"] == name
        })
        .unwrap_or_else(|| panic!("no {kind} {name} in {K8S}"))
}

fn kustomization() -> Value {
    parse_yaml(
        &read(&format!("{K8S}/kustomization.yaml")),
        "kustomization.yaml",
    )
    .remove(0)
}

/// The literals of a configMapGenerator entry, as an environment.
fn generated_literals(name: &str) -> BTreeMap<String, String> {
    let kustomization = kustomization();
    let generator = seq(&kustomization, &["configMapGenerator"])
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no configMapGenerator {name}"));
    strings(generator, &["literals"])
        .iter()
        .map(|literal| {
            let (k, v) = literal.split_once('=').expect("KEY=VALUE");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The first container of a pod template.
fn container(workload: &Value) -> &Value {
    let containers = seq(workload, &["spec", "template", "spec", "containers"]);
    assert_eq!(containers.len(), 1, "one container per pod");
    &containers[0]
}

/// A container's environment as the kubelet builds it: `envFrom` ConfigMaps (resolved from the
/// kustomization's generators), then `env`. The downward-API pod name becomes a literal one.
fn k8s_env(workload: &Value) -> BTreeMap<String, String> {
    let container = container(workload);
    let mut env = BTreeMap::new();
    if let Some(sources) = container.get("envFrom") {
        for source in sources.as_sequence().unwrap() {
            let name = text(source, &["configMapRef", "name"]);
            env.extend(generated_literals(name));
        }
    }
    for var in container
        .get("env")
        .and_then(Value::as_sequence)
        .map_or(&[][..], Vec::as_slice)
    {
        let name = text(var, &["name"]).to_owned();
        let value = match (var.get("value"), var.get("valueFrom")) {
            (Some(value), None) => scalar(value).expect("a scalar value"),
            (None, Some(from)) => {
                assert_eq!(
                    text(from, &["fieldRef", "fieldPath"]),
                    "metadata.name",
                    "{name}"
                );
                "kafkad-producer-5c7d9f6b8-x2x7z".to_owned()
            }
            other => panic!("{name}: {other:?}"),
        };
        env.insert(name, value);
    }
    env
}

#[test]
fn k8s_base_lists_every_manifest_and_names_no_namespace() {
    let kustomization = kustomization();
    assert!(
        kustomization.get("namespace").is_none(),
        "namespace-agnostic"
    );
    let resources: BTreeSet<String> = strings(&kustomization, &["resources"])
        .into_iter()
        .collect();
    let files: BTreeSet<String> = k8s_objects()
        .into_iter()
        .map(|(file, _)| file)
        .filter(|file| file != "kustomization.yaml")
        .collect();
    assert_eq!(resources, files, "kustomization.yaml lists every manifest");

    let mut kinds = BTreeSet::new();
    for (file, object) in k8s_objects() {
        if file == "kustomization.yaml" {
            continue;
        }
        assert!(
            at(&object, &["metadata"]).get("namespace").is_none(),
            "{file} names a namespace"
        );
        kinds.insert(format!(
            "{} {}",
            text(&object, &["kind"]),
            text(&object, &["metadata", "name"])
        ));
    }
    assert_eq!(
        kinds,
        set([
            "Deployment kafkad-batch",
            "Deployment kafkad-producer",
            "Deployment kafkad-single",
            "Job kafkad-topic-init",
            "Service kafkad-metrics",
        ])
    );
}

#[test]
fn k8s_config_map_is_generated_from_exact_copies_of_config() {
    let kustomization = kustomization();
    let generator = seq(&kustomization, &["configMapGenerator"])
        .iter()
        .find(|g| g["name"] == "kafkad-config")
        .expect("a kafkad-config generator");
    let files = strings(generator, &["files"]);
    assert_eq!(
        files,
        ROLES.map(|role| format!("config/{role}.toml")),
        "one key per role file"
    );
    let copies: BTreeSet<String> = std::fs::read_dir(root().join(K8S).join("config"))
        .expect("deploy/k8s/config exists")
        .map(|e| format!("config/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    assert_eq!(copies, files.iter().cloned().collect(), "no stray copies");
    for file in &files {
        assert_eq!(
            read(&format!("{K8S}/{file}")),
            read(file),
            "{K8S}/{file} differs from {file}: run `make k8s-config`"
        );
    }
}

#[test]
fn k8s_runs_two_replicas_per_role_with_probes_resources_and_a_locked_down_container() {
    for role in ROLES {
        let deployment = k8s_object("Deployment", &format!("kafkad-{role}"));
        let what = format!("Deployment kafkad-{role}");
        assert_eq!(int(&deployment, &["spec", "replicas"]), 2, "{what}");
        let labels = mapping(&deployment, &["spec", "template", "metadata", "labels"]);
        for (key, value) in mapping(&deployment, &["spec", "selector", "matchLabels"]) {
            assert_eq!(
                labels.get(key),
                Some(value),
                "{what}: selector matches the pods"
            );
        }

        let pod = at(&deployment, &["spec", "template", "spec"]);
        let grace = int(pod, &["terminationGracePeriodSeconds"]);
        let print = assert_config_valid(&what, &[], &k8s_env(&deployment));
        assert!(
            Duration::from_secs(grace as u64) > shutdown_timeout(&print) && grace > 30,
            "{what}: terminationGracePeriodSeconds {grace} must exceed shutdown_timeout"
        );
        assert_eq!(
            at(pod, &["securityContext", "runAsNonRoot"]),
            &Value::Bool(true)
        );
        assert_eq!(
            text(pod, &["securityContext", "seccompProfile", "type"]),
            "RuntimeDefault"
        );

        let container = container(&deployment);
        assert_eq!(text(container, &["image"]), IMAGE, "{what}");
        let env = k8s_env(&deployment);
        assert_eq!(env["KAFKAD_ROLE"], role, "{what}");
        assert_eq!(env["KAFKAD_CONFIG"], format!("/etc/kafkad/{role}.toml"));
        assert!(
            !env.keys().any(|k| k.starts_with("KAFKAD_HTTP__")),
            "{what}"
        );

        // The ConfigMap of config/*.toml is what /etc/kafkad holds.
        let mount = seq(container, &["volumeMounts"])
            .iter()
            .find(|m| m["mountPath"] == "/etc/kafkad")
            .unwrap_or_else(|| panic!("{what}: nothing mounted at /etc/kafkad"));
        let volume = seq(pod, &["volumes"])
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("the mounted volume");
        assert_eq!(
            text(volume, &["configMap", "name"]),
            "kafkad-config",
            "{what}"
        );

        // Probes on the HTTP endpoint.
        let ports = seq(container, &["ports"]);
        let port_of = |probe: &str| {
            let port = at(container, &[probe, "httpGet", "port"]);
            match port {
                Value::Number(n) => n.as_i64().unwrap(),
                Value::String(name) => {
                    let port = ports
                        .iter()
                        .find(|p| p["name"] == name.as_str())
                        .unwrap_or_else(|| panic!("{what}: no port named {name}"));
                    int(port, &["containerPort"])
                }
                other => panic!("{what}: {probe} port {other:?}"),
            }
        };
        assert_eq!(
            text(container, &["livenessProbe", "httpGet", "path"]),
            "/healthz"
        );
        assert_eq!(port_of("livenessProbe"), HTTP_PORT, "{what}");
        assert_eq!(
            text(container, &["readinessProbe", "httpGet", "path"]),
            "/readyz"
        );
        assert_eq!(port_of("readinessProbe"), HTTP_PORT, "{what}");

        // Requests and limits, memory capped at 128Mi (kafkad aims at 64 MB resident).
        for kind in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    at(container, &["resources", kind]).get(resource).is_some(),
                    "{what}: resources.{kind}.{resource}"
                );
            }
        }
        assert_eq!(text(container, &["resources", "limits", "memory"]), "128Mi");

        assert_locked_down(container, &what);
    }

    let producer = k8s_object("Deployment", "kafkad-producer");
    let id = seq(container(&producer), &["env"])
        .iter()
        .find(|v| v["name"] == "KAFKAD_PRODUCER__PRODUCER_ID")
        .expect("producers set their id");
    assert_eq!(
        text(id, &["valueFrom", "fieldRef", "fieldPath"]),
        "metadata.name",
        "each producer replica is named after its pod"
    );
}

fn assert_locked_down(container: &Value, what: &str) {
    let security = at(container, &["securityContext"]);
    assert_eq!(security["runAsNonRoot"], Value::Bool(true), "{what}");
    assert_eq!(int(security, &["runAsUser"]), KAFKAD_UID, "{what}");
    assert_eq!(
        security["readOnlyRootFilesystem"],
        Value::Bool(true),
        "{what}"
    );
    assert_eq!(
        security["allowPrivilegeEscalation"],
        Value::Bool(false),
        "{what}"
    );
    assert_eq!(
        strings(security, &["capabilities", "drop"]),
        ["ALL"],
        "{what}"
    );
    assert!(security["capabilities"].get("add").is_none(), "{what}");
    assert_eq!(
        text(security, &["seccompProfile", "type"]),
        "RuntimeDefault",
        "{what}"
    );
}

#[test]
fn k8s_topic_init_job_runs_topic_ensure_once_per_apply() {
    let job = k8s_object("Job", "kafkad-topic-init");
    let container = container(&job);
    assert_eq!(text(container, &["image"]), IMAGE);
    assert_eq!(strings(container, &["args"]), ["topic", "ensure"]);
    assert!(
        container.get("command").is_none(),
        "the image's ENTRYPOINT is kafkad"
    );
    let restart = text(&job, &["spec", "template", "spec", "restartPolicy"]);
    assert!(restart == "OnFailure" || restart == "Never", "{restart}");
    assert_locked_down(container, "Job kafkad-topic-init");

    let env = k8s_env(&job);
    assert!(
        !env.contains_key("KAFKAD_ROLE"),
        "topic ensure runs no role"
    );
    // `config check` needs a role; topic-init has none, so check under the producer's defaults.
    let print = assert_config_valid("Job kafkad-topic-init", &["--role", "producer"], &env);
    assert_eq!(printed(&print, "partitions"), "3");
    assert_eq!(printed(&print, "replication_factor"), "2");
}

#[test]
fn k8s_metrics_service_selects_every_kafkad_pod_and_no_job() {
    let service = k8s_object("Service", "kafkad-metrics");
    let selector = mapping(&service, &["spec", "selector"]);
    let selects = |workload: &Value| {
        let labels = mapping(workload, &["spec", "template", "metadata", "labels"]);
        selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    for role in ROLES {
        assert!(
            selects(&k8s_object("Deployment", &format!("kafkad-{role}"))),
            "{role}"
        );
    }
    assert!(!selects(&k8s_object("Job", "kafkad-topic-init")));

    let ports = seq(&service, &["spec", "ports"]);
    assert_eq!(ports.len(), 1);
    assert_eq!(int(&ports[0], &["port"]), HTTP_PORT);
    assert_eq!(text(&ports[0], &["targetPort"]), "http");
    let annotations = at(&service, &["metadata", "annotations"]);
    assert_eq!(text(annotations, &["prometheus.io/scrape"]), "true");
    assert_eq!(
        text(annotations, &["prometheus.io/port"]),
        HTTP_PORT.to_string()
    );
    assert_eq!(text(annotations, &["prometheus.io/path"]), "/metrics");
}

#[test]
fn k8s_base_renders_with_kubectl_kustomize_where_kubectl_exists() {
    let output = match Command::new("kubectl")
        .args(["kustomize", K8S])
        .current_dir(root())
        .output()
    {
        Ok(output) => output,
        Err(_) => {
            eprintln!("kubectl is not installed: the static checks above still hold");
            return;
        }
    };
    assert!(
        output.status.success(),
        "kubectl kustomize {K8S}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = parse_yaml(&String::from_utf8_lossy(&output.stdout), "kustomize output");
    let kinds: Vec<String> = rendered
        .iter()
        .map(|o| format!("{} {}", text(o, &["kind"]), text(o, &["metadata", "name"])))
        .collect();
    assert_eq!(kinds.len(), 7, "{kinds:?}");
    // The generated ConfigMaps are hash-suffixed and every reference follows the new name.
    let config_map = rendered
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap" && text(o, &["metadata", "name"]).starts_with("kafkad-config-")
        })
        .expect("the kafkad-config ConfigMap");
    assert_eq!(
        text(config_map, &["data", "producer.toml"]),
        read("config/producer.toml")
    );
    let config_name = text(config_map, &["metadata", "name"]);
    for deployment in rendered.iter().filter(|o| o["kind"] == "Deployment") {
        let volumes = seq(deployment, &["spec", "template", "spec", "volumes"]);
        assert!(volumes
            .iter()
            .any(|v| v["configMap"]["name"] == config_name));
    }
}

// ---- deploy/Dockerfile ----------------------------------------------------------------------

/// One `FROM` stage: its base image, its `AS` name and its instructions (keyword, arguments).
struct Stage {
    base: String,
    name: Option<String>,
    instructions: Vec<(String, String)>,
}

impl Stage {
    fn all(&self, keyword: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, args)| args.as_str())
            .collect()
    }
}

/// Dockerfile instructions with line continuations joined and comments dropped, split into
/// stages.
fn dockerfile() -> Vec<Stage> {
    let text = read("deploy/Dockerfile");
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let keyword = keyword.to_ascii_uppercase();
        let args = args.trim().to_owned();
        if keyword == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            stages.push(Stage {
                base: words[0].to_owned(),
                name,
                instructions: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .expect("an instruction before FROM")
                .instructions
                .push((keyword, args));
        }
    }
    stages
}

#[test]
fn dockerfile_builds_with_the_rust_image_and_runs_on_slim_debian() {
    let stages = dockerfile();
    assert!(stages.len() >= 2, "multi-stage");
    let build = &stages[0];
    assert_eq!(build.base, "rust:1-bookworm");
    let build_runs = build.all("RUN").join("\n");
    for package in [
        "build-essential",
        "pkg-config",
        "libssl-dev",
        "zlib1g-dev",
        "python3",
    ] {
        assert!(build_runs.contains(package), "builder installs {package}");
    }
    assert!(build_runs.contains("cargo build --release --locked"));

    let runtime = stages.last().unwrap();
    assert_eq!(runtime.base, "debian:bookworm-slim");
    let runtime_runs = runtime.all("RUN").join("\n");
    // What the binary links (libssl, zlib) and what the compose health check runs (curl).
    for package in ["libssl3", "zlib1g", "curl"] {
        assert!(
            runtime_runs.split_whitespace().any(|word| word == package),
            "runtime installs {package}"
        );
    }
}

#[test]
fn dockerfile_runtime_stage_runs_as_a_non_root_numeric_user() {
    let stages = dockerfile();
    let runtime = stages.last().unwrap();
    let user = *runtime
        .all("USER")
        .last()
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "USER {user}");
    assert_eq!(
        uid.parse::<i64>().ok(),
        Some(KAFKAD_UID),
        "numeric, and the uid the pods run as"
    );
    let gid = user.split(':').nth(1).expect("USER uid:gid");
    assert_ne!(gid, "0", "not the root group");
}

#[test]
fn dockerfile_entrypoint_is_exec_form_so_kafkad_is_pid_1() {
    let stages = dockerfile();
    let runtime = stages.last().unwrap();
    let entrypoints = runtime.all("ENTRYPOINT");
    assert_eq!(entrypoints.len(), 1);
    let argv: Vec<String> = serde_json::from_str(entrypoints[0])
        .unwrap_or_else(|_| panic!("ENTRYPOINT {} is shell form", entrypoints[0]));
    assert_eq!(argv, ["/usr/local/bin/kafkad"]);
    for cmd in runtime.all("CMD") {
        assert!(
            serde_json::from_str::<Vec<String>>(cmd).is_ok(),
            "CMD {cmd} is shell form"
        );
    }
    for signal in runtime.all("STOPSIGNAL") {
        assert_eq!(signal, "SIGTERM");
    }
}

#[test]
fn dockerfile_runtime_stage_copies_only_the_binary_and_config() {
    let stages = dockerfile();
    let build_name = stages[0].name.clone().expect("the build stage is named");
    let runtime = stages.last().unwrap();
    assert!(runtime.all("ADD").is_empty(), "no ADD in the runtime stage");
    let copies: BTreeSet<(Option<String>, String, String)> = runtime
        .all("COPY")
        .into_iter()
        .map(|args| {
            let mut from = None;
            let mut paths = Vec::new();
            for word in args.split_whitespace() {
                match word.strip_prefix("--from=") {
                    Some(stage) => from = Some(stage.to_owned()),
                    None if word.starts_with("--") => {}
                    None => paths.push(word.to_owned()),
                }
            }
            assert_eq!(paths.len(), 2, "COPY {args}: one source, one destination");
            (from, paths[0].clone(), paths[1].clone())
        })
        .collect();
    assert_eq!(
        copies,
        BTreeSet::from([
            (
                Some(build_name),
                "/out/kafkad".to_owned(),
                "/usr/local/bin/kafkad".to_owned()
            ),
            (None, "config/".to_owned(), CONFIG_DIR_IN_IMAGE.to_owned()),
        ])
    );
}

#[test]
fn dockerignore_keeps_target_and_git_out_of_the_build_context() {
    let ignored: BTreeSet<String> = read(".dockerignore")
        .lines()
        .map(|l| l.trim().trim_matches('/').to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for entry in ["target", ".git"] {
        assert!(ignored.contains(entry), ".dockerignore lacks {entry}");
    }
    for needed in ["src", "config", "Cargo.toml", "Cargo.lock"] {
        assert!(!ignored.contains(needed), ".dockerignore drops {needed}");
    }
}

#[test]
fn make_image_builds_the_image_compose_and_k8s_run() {
    let makefile = read("Makefile");
    let recipe = makefile
        .split("\nimage:")
        .nth(1)
        .expect("a `make image` target")
        .lines()
        .nth(1)
        .expect("its recipe")
        .trim()
        .to_owned();
    assert_eq!(
        recipe,
        format!("docker build -f deploy/Dockerfile -t {IMAGE} .")
    );
}
