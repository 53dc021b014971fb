//! `KAFKAD_*` variables Kubernetes injects for Services named kafkad-*: set aside, not read
//! as configuration, and only those.

use super::tests::{load_err, load_ok, request};
use super::*;

/// What the kubelet writes into every container of a namespace holding Services named
/// `kafkad` (one unnamed TCP port), `kafkad-metrics` (TCP port 9464 named `http`) and
/// `kafkad-dns` (UDP port 53 named `dns-udp`, an IPv6 cluster IP), unless the pod sets
/// `enableServiceLinks: false`.
const KUBERNETES_SERVICE_LINKS: &[(&str, &str)] = &[
    ("KAFKAD_SERVICE_HOST", "10.0.0.7"),
    ("KAFKAD_SERVICE_PORT", "80"),
    ("KAFKAD_PORT", "tcp://10.0.0.7:80"),
    ("KAFKAD_PORT_80_TCP", "tcp://10.0.0.7:80"),
    ("KAFKAD_PORT_80_TCP_PROTO", "tcp"),
    ("KAFKAD_PORT_80_TCP_PORT", "80"),
    ("KAFKAD_PORT_80_TCP_ADDR", "10.0.0.7"),
    ("KAFKAD_METRICS_SERVICE_HOST", "10.0.0.1"),
    ("KAFKAD_METRICS_SERVICE_PORT", "9464"),
    ("KAFKAD_METRICS_SERVICE_PORT_HTTP", "9464"),
    ("KAFKAD_METRICS_PORT", "tcp://10.0.0.1:9464"),
    ("KAFKAD_METRICS_PORT_9464_TCP", "tcp://10.0.0.1:9464"),
    ("KAFKAD_METRICS_PORT_9464_TCP_PROTO", "tcp"),
    ("KAFKAD_METRICS_PORT_9464_TCP_PORT", "9464"),
    ("KAFKAD_METRICS_PORT_9464_TCP_ADDR", "10.0.0.1"),
    ("KAFKAD_DNS_SERVICE_HOST", "fd00::a"),
    ("KAFKAD_DNS_SERVICE_PORT", "53"),
    ("KAFKAD_DNS_SERVICE_PORT_DNS_UDP", "53"),
    ("KAFKAD_DNS_PORT", "udp://[fd00::a]:53"),
    ("KAFKAD_DNS_PORT_53_UDP", "udp://[fd00::a]:53"),
    ("KAFKAD_DNS_PORT_53_UDP_PROTO", "udp"),
    ("KAFKAD_DNS_PORT_53_UDP_PORT", "53"),
    ("KAFKAD_DNS_PORT_53_UDP_ADDR", "fd00::a"),
];

#[test]
fn kubernetes_service_link_variables_are_set_aside_not_read() {
    let mut env = KUBERNETES_SERVICE_LINKS.to_vec();
    env.push(("KAFKAD_BATCH__MIN_SIZE", "20"));
    let config = load_ok(&request(Some(Role::Batch), None, &env));
    assert_eq!(
        config.settings.batch.min_size.get(),
        20,
        "real settings still read"
    );
    let mut expected: Vec<String> = KUBERNETES_SERVICE_LINKS
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    expected.sort();
    assert_eq!(config.service_links, expected);
    let printed = config.render();
    assert!(
        printed.contains("# not configuration: KAFKAD_METRICS_PORT (a Kubernetes service link"),
        "{printed}"
    );
}

#[test]
fn a_kafkad_variable_that_only_looks_like_a_service_link_is_still_an_unknown_key() {
    for (name, value, key) in [
        // The kubelet writes a link address, never a bare port, into `<SERVICE>_PORT`.
        ("KAFKAD_METRICS_PORT", "9464", "metrics_port"),
        (
            "KAFKAD_METRICS_PORT",
            "http://10.0.0.1:9464",
            "metrics_port",
        ),
        ("KAFKAD_SERVICE_HOST", "kafka-0", "service_host"),
        // The port in the name and in the address differ.
        (
            "KAFKAD_METRICS_PORT_9464_TCP",
            "tcp://10.0.0.1:80",
            "metrics_port_9464_tcp",
        ),
        ("KAFKAD_SERVICE_PORT", "0", "service_port"),
    ] {
        let error = load_err(&request(Some(Role::Single), None, &[(name, value)]));
        assert!(
            error.contains(&format!("unknown key `{key}`")) && error.contains(name),
            "{name}={value}: {error}"
        );
    }
}
