//! deploy/k8s: the Kubernetes base (one Deployment per role, two replicas each, config from a
//! ConfigMap generated from config/*.toml), parsed and checked without a cluster.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_norway::Value;
use support::deploy::*;

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
        assert!(
            container.get("command").is_none(),
            "{what}: the image's ENTRYPOINT (tini, then kafkad) must stay: tini reaps orphans"
        );
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

/// Kubernetes writes `<SERVICE>_PORT=tcp://...`, `<SERVICE>_SERVICE_HOST=...` and more into
/// every container for each Service of the namespace unless the pod opts out; for a Service
/// named `kafkad-...` those are `KAFKAD_*` variables. kafkad sets them aside, and the pods do
/// not get them in the first place.
#[test]
fn k8s_pods_opt_out_of_service_link_variables() {
    let workloads = ROLES
        .iter()
        .map(|role| k8s_object("Deployment", &format!("kafkad-{role}")))
        .chain([k8s_object("Job", "kafkad-topic-init")]);
    for workload in workloads {
        let pod = at(&workload, &["spec", "template", "spec"]);
        assert_eq!(
            pod.get("enableServiceLinks"),
            Some(&Value::Bool(false)),
            "{}: enableServiceLinks",
            text(&workload, &["metadata", "name"])
        );
    }
}

#[test]
fn k8s_topic_init_job_runs_topic_ensure_once_per_apply() {
    let job = k8s_object("Job", "kafkad-topic-init");
    let container = container(&job);
    assert_eq!(text(container, &["image"]), IMAGE);
    assert_eq!(strings(container, &["args"]), ["topic", "ensure"]);
    assert!(
        container.get("command").is_none(),
        "the image's ENTRYPOINT (tini, then kafkad) must stay: tini reaps orphans"
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
