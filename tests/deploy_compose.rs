//! docker-compose.yml, parsed and held to the seed topology: three KRaft brokers, a one-shot
//! topic init, six kafkad services from one image differing only in environment. No Docker
//! engine is needed: every kafkad service's exact environment goes through `kafkad config
//! check` (and `config print`, to see the values took effect).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_norway::Value;
use support::deploy::*;

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
    expected.extend(set(POSTGRES_PROFILE));
    expected.extend(KAFKAD_SERVICES.iter().map(|(name, _)| name.to_string()));
    assert_eq!(key_names(mapping(&compose, &["services"])), expected);
}

/// The services only `--profile postgres` starts.
const POSTGRES_PROFILE: [&str; 2] = ["postgres", "batch-postgres"];

/// The postgres example: off by default, a batch consumer of a group of its own that waits
/// for the database and passes `config check` (which does not connect) with an exactly-once
/// postgres sink, its password hidden from `config print`.
#[test]
fn the_postgres_profile_wires_an_exactly_once_batch_consumer_to_its_database() {
    let compose = compose();
    for name in POSTGRES_PROFILE {
        assert_eq!(
            strings(service(&compose, name), &["profiles"]),
            vec!["postgres"],
            "{name}"
        );
    }
    let consumer = service(&compose, "batch-postgres");
    assert!(depends_on(consumer).contains_key("postgres"));
    let env = compose_env(consumer);
    let print = assert_config_valid("batch-postgres", &[], &env);
    assert_eq!(printed(&print, "kind"), "postgres");
    assert_eq!(printed(&print, "delivery"), "exactly_once");
    assert_eq!(printed(&print, "\"group.id\""), "batch-postgres-group");
    assert!(!print.contains(&env["KAFKAD_SINK__PASSWORD"]), "{print}");
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

#[test]
fn compose_runs_the_kafka_version_the_tests_run() {
    let pom = read("scripts/kafka/pom.xml");
    let version = pom
        .split("<kafka.version>")
        .nth(1)
        .and_then(|rest| rest.split("</kafka.version>").next())
        .expect("scripts/kafka/pom.xml pins <kafka.version>");
    let compose = compose();
    for broker in BROKERS {
        assert_eq!(
            text(service(&compose, broker), &["image"]),
            format!("apache/kafka:{version}"),
            "{broker} runs the Kafka version the tests run (scripts/kafka/pom.xml)"
        );
    }
}
