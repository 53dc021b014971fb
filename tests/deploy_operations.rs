//! Operating kafkad: the Grafana dashboard (deploy/grafana/kafkad.json), the Prometheus alert
//! rules (deploy/prometheus/), and the optional Prometheus-operator and KEDA component of the
//! Kubernetes base (deploy/k8s/components/operator, used by deploy/overlays/operator).
//!
//! No broker and no cluster: metric names are checked against the /metrics of a real
//! `kafkad demo` (on its embedded mock cluster), the rules with promtool, the manifests by
//! parsing them and with `kubectl kustomize`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kafkad::dlq::Rejection;
use kafkad::sink::SinkError;
use serde_json::Value as Json;
use serde_norway::Value;
use support::deploy::*;
use support::process::Kafkad;
use support::{http_get, sample, TOPIC};

const DASHBOARD: &str = "deploy/grafana/kafkad.json";
const ALERTS: &str = "deploy/prometheus/alerts.yml";
const ALERTS_TEST: &str = "deploy/prometheus/alerts_test.yml";
const COMPONENT: &str = "deploy/k8s/components/operator";
const OVERLAY: &str = "deploy/overlays/operator";
/// Series Prometheus makes itself for every target, which no /metrics shows.
const PROMETHEUS_SERIES: [&str; 1] = ["up"];
/// The consumer Deployments KEDA scales, with their groups.
const SCALED: [(&str, &str); 2] = [
    ("kafkad-single", "single-message-group"),
    ("kafkad-batch", "batch-message-group"),
];

// ---- PromQL ---------------------------------------------------------------------------------

/// Words of PromQL that are never metric names when they stand bare.
const KEYWORDS: [&str; 12] = [
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end", "true", "false",
];
/// Aggregation operators: written `sum by (l) (...)` their name is not followed by `(`.
const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Modifiers followed by a list of label names, `by (a, b)`.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The index just past the string literal that opens at `start` (`"`, `'` or a backtick).
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// The index just past the bracket that closes the one at `start`, strings skipped.
fn skip_group(chars: &[char], start: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(chars, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

fn next_non_space(chars: &[char], mut i: usize) -> Option<(usize, char)> {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    chars.get(i).map(|&c| (i, c))
}

/// The metric names a PromQL expression selects: identifiers followed by `{` or `[` or used
/// bare, but not functions, aggregations, keywords, label names (inside `{...}` and after
/// `by`/`on`/...), durations, numbers, strings or Grafana variables (`$job`, `${job}`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' => i = skip_group(&chars, i, '{', '}'),
            '[' => i = skip_group(&chars, i, '[', ']'),
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '$' => {
                i += 1;
                if chars.get(i) == Some(&'{') {
                    i = skip_group(&chars, i, '{', '}');
                } else {
                    while i < chars.len() && is_ident(chars[i]) {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // Numbers (1, 0.95, 1e3, 0x1F) and durations (5m after `offset`).
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if is_ident_start(c) => {
                let start = i;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let lower = word.to_ascii_lowercase();
                let next = next_non_space(&chars, i);
                if LABEL_LISTS.contains(&lower.as_str()) {
                    if let Some((at, '(')) = next {
                        i = skip_group(&chars, at, '(', ')');
                    }
                } else if KEYWORDS.contains(&lower.as_str())
                    || AGGREGATIONS.contains(&lower.as_str())
                    || matches!(next, Some((_, '(')))
                {
                    // A keyword, an aggregation or a function call.
                } else {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn promql_metric_names_are_extracted_without_functions_labels_or_variables() {
    let cases: [(&str, &[&str]); 9] = [
        (
            r#"histogram_quantile(0.95, sum by (le, instance) (rate(kafkad_batch_size_bucket{job=~"$job", role=~"${role}"}[$__rate_interval])))"#,
            &["kafkad_batch_size_bucket"],
        ),
        (
            "sum(rate(a_total[5m])) by (group) / on (group) group_left (role) b",
            &["a_total", "b"],
        ),
        (
            r#"absent(x{role="producer"}) or absent(y{role="single"}) unless z offset 5m"#,
            &["x", "y", "z"],
        ),
        ("up == 0", &["up"]),
        ("60 * sum by (group) (rate(c[1m])) > 1e3", &["c"]),
        (
            r#"label_replace(m, "dst", "$1", "src", "(.*)") and bool n"#,
            &["m", "n"],
        ),
        ("max without (partition) (lag) - min(lag)", &["lag"]),
        ("topk(5, sum by (instance) (q))", &["q"]),
        (
            r#"count_values("v", k:recorded:rate5m)"#,
            &["k:recorded:rate5m"],
        ),
    ];
    for (expr, expected) in cases {
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(metric_names(expr), expected, "{expr}");
    }
}

/// The series names one /metrics scrape serves: the name of every sample. A family whose
/// `# TYPE` line stands alone (a labelled counter before its first event) serves nothing a
/// query could find, so it does not count.
fn exposed_series(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            line[..end].to_owned()
        })
        .collect()
}

// ---- the files ------------------------------------------------------------------------------

fn dashboard() -> Json {
    serde_json::from_str(&read(DASHBOARD))
        .unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"))
}

/// Every panel, the panels inside collapsed rows included.
fn panels(dashboard: &Json) -> Vec<&Json> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels is a list") {
        all.push(panel);
        if let Some(inner) = panel.get("panels").and_then(Json::as_array) {
            all.extend(inner);
        }
    }
    all
}

/// (where, expr) of every panel target.
fn panel_exprs(dashboard: &Json) -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    for panel in panels(dashboard) {
        for target in panel
            .get("targets")
            .and_then(Json::as_array)
            .map_or(&[][..], Vec::as_slice)
        {
            let expr = target["expr"].as_str().unwrap_or_default();
            exprs.push((
                format!(
                    "panel {} ({}) target {}",
                    panel["id"], panel["title"], target["refId"]
                ),
                expr.to_owned(),
            ));
        }
    }
    exprs
}

/// A query variable's query, in either form Grafana stores it.
fn variable_query(variable: &Json) -> Option<&str> {
    match &variable["query"] {
        Json::String(query) => Some(query),
        Json::Object(query) => query.get("query").and_then(Json::as_str),
        _ => None,
    }
}

/// The PromQL inside a variable query: `label_values(<expr>, label)` -> `<expr>`;
/// `label_values(label)` selects no metric.
fn variable_promql(query: &str) -> Option<String> {
    let query = query.trim();
    let Some(inner) = query
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
    else {
        return Some(query.to_owned());
    };
    let chars: Vec<char> = inner.chars().collect();
    let mut i = 0;
    let mut last_comma = None;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(&chars, i);
                continue;
            }
            '{' => {
                i = skip_group(&chars, i, '{', '}');
                continue;
            }
            '(' => {
                i = skip_group(&chars, i, '(', ')');
                continue;
            }
            ',' => last_comma = Some(i),
            _ => {}
        }
        i += 1;
    }
    last_comma.map(|at| chars[..at].iter().collect())
}

fn templating(dashboard: &Json) -> &[Json] {
    dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list is a list")
}

fn alert_rules() -> Vec<Value> {
    let rules = parse_yaml(&read(ALERTS), ALERTS).remove(0);
    seq(&rules, &["groups"])
        .iter()
        .flat_map(|group| seq(group, &["rules"]).to_vec())
        .collect()
}

/// Every metric name the dashboard and the rules use, with where each is used.
fn used_metric_names() -> BTreeMap<String, BTreeSet<String>> {
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let dashboard = dashboard();
    let mut exprs = panel_exprs(&dashboard);
    for variable in templating(&dashboard) {
        if variable["type"] == "query" {
            let query = variable_query(variable).expect("a query variable has a query");
            if let Some(promql) = variable_promql(query) {
                exprs.push((format!("variable {}", variable["name"]), promql));
            }
        }
    }
    for rule in alert_rules() {
        let name = text(&rule, &["alert"]).to_owned();
        exprs.push((format!("alert {name}"), text(&rule, &["expr"]).to_owned()));
        // Metric names quoted in the annotations (runbook queries) must exist as well.
        for (_, annotation) in mapping(&rule, &["annotations"]) {
            let annotation = annotation.as_str().unwrap_or_default();
            for word in annotation.split(|c: char| !is_ident(c)) {
                if word.starts_with("kafkad_") {
                    used.entry(word.to_owned())
                        .or_default()
                        .insert(format!("alert {name} annotations"));
                }
            }
        }
    }
    for (place, expr) in exprs {
        for name in metric_names(&expr) {
            used.entry(name).or_default().insert(place.clone());
        }
    }
    used
}

// ---- (a) every metric name exists in a real run ---------------------------------------------

/// `kafkad demo --http 127.0.0.1:0` (the embedded mock cluster, nothing but valid records and
/// a sink that never fails), scraped until every name the dashboard and the rules use
/// appears, or two minutes passed. Returns the last scrape.
fn scrape_a_demo_until(wanted: &BTreeSet<String>) -> (String, BTreeSet<String>) {
    let dir = tempfile::tempdir().expect("dir");
    let mut demo = Kafkad::spawn(
        "demo",
        dir.path(),
        &["demo", "--http", "127.0.0.1:0", "--messages", "500000"],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let wait = |what: &str, demo: &mut Kafkad| {
        assert!(
            demo.running(),
            "the demo exited while waiting for {what}:\n{}",
            demo.log_tail()
        );
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            demo.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    // Port 0: the demo logs the address it bound.
    let addr = loop {
        let found = demo.log_text().lines().find_map(|line| {
            line.contains("serving /metrics")
                .then(|| line.split("addr=").nth(1))
                .flatten()
                .map(|addr| {
                    addr.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                })
        });
        if let Some(addr) = found {
            break addr;
        }
        wait("the HTTP endpoint", &mut demo);
    };

    // What the last answered scrape lacked: the demo's endpoint closes as it finishes.
    let mut missing: Vec<String> = wanted.iter().cloned().collect();
    loop {
        if let Some((200, scrape)) = http_get(&addr, "/metrics") {
            let exposed = exposed_series(&scrape);
            if wanted.is_subset(&exposed) {
                return (scrape, exposed);
            }
            missing = wanted.difference(&exposed).cloned().collect();
        }
        wait(&format!("{missing:?} on /metrics"), &mut demo);
    }
}

#[test]
fn every_metric_the_dashboard_and_the_alerts_use_is_served_by_a_real_run() {
    let used = used_metric_names();
    assert!(used.len() > 10, "names found: {used:?}");
    let wanted: BTreeSet<String> = used
        .keys()
        .filter(|name| !PROMETHEUS_SERIES.contains(&name.as_str()))
        .cloned()
        .collect();
    for name in &wanted {
        assert!(
            name.starts_with("kafkad_"),
            "{name} (used by {:?}) is neither kafkad's nor one Prometheus makes",
            used[name]
        );
    }
    let (scrape, exposed) = scrape_a_demo_until(&wanted);
    for name in &wanted {
        assert!(exposed.contains(name), "{name} is not on /metrics");
    }
    // The labelled counters serve every reason and kind they can count before any of them
    // happened, so that panels and alerts on one of them have a series to start from.
    let known_labels = Rejection::unusable_record_kinds()
        .map(|reason| ("kafkad_decode_errors_total", "reason", reason))
        .chain(Rejection::kinds().map(|reason| {
            (
                "kafkad_records_dead_lettered_by_reason_total",
                "reason",
                reason,
            )
        }))
        .chain(SinkError::KINDS.map(|kind| ("kafkad_processing_failures_total", "kind", kind)));
    for (name, label, value) in known_labels {
        assert!(
            sample(&scrape, name, &[(label, value)]).is_some(),
            "{name}{{{label}=\"{value}\"}} is not on /metrics"
        );
    }

    // The RSS panel exists exactly when kafkad exports the process collector's metric.
    let rss = "process_resident_memory_bytes";
    assert_eq!(
        used.contains_key(rss),
        exposed.contains(rss),
        "{rss}: on /metrics {}, in the dashboard {}",
        exposed.contains(rss),
        used.contains_key(rss)
    );
}

// ---- (b) the dashboard is a Grafana dashboard model -----------------------------------------

#[test]
fn dashboard_is_a_valid_grafana_dashboard_model() {
    let dashboard = dashboard();
    assert_eq!(dashboard["title"], "kafkad");
    let uid = dashboard["uid"].as_str().expect("uid is a string");
    assert!(
        !uid.is_empty()
            && uid.len() <= 40
            && uid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "uid {uid:?}: at most 40 of [A-Za-z0-9_-]"
    );
    let schema = dashboard["schemaVersion"]
        .as_u64()
        .expect("schemaVersion is a number");
    assert!(schema >= 36, "schemaVersion {schema}: Grafana 9.x or newer");
    assert!(
        dashboard["id"].is_null(),
        "no instance id: the importing Grafana assigns it"
    );
    assert!(dashboard["time"]["from"].is_string() && dashboard["time"]["to"].is_string());

    // Templating: a Prometheus data source variable and the label filters.
    let variables = templating(&dashboard);
    let names: Vec<&str> = variables
        .iter()
        .map(|v| v["name"].as_str().expect("a variable name"))
        .collect();
    assert_eq!(
        names.iter().copied().collect::<BTreeSet<_>>().len(),
        names.len(),
        "unique variable names: {names:?}"
    );
    for wanted in ["datasource", "job", "instance", "role", "topic"] {
        assert!(names.contains(&wanted), "no {wanted} variable: {names:?}");
    }
    let datasource = &variables[names.iter().position(|n| *n == "datasource").unwrap()];
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    let prometheus = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        assert_eq!(variable["datasource"], prometheus, "{}", variable["name"]);
        let query = variable_query(variable).expect("a query");
        assert!(
            query.starts_with("label_values("),
            "{}: {query}",
            variable["name"]
        );
    }

    // Panels: unique ids, a place on the 24-column grid without overlaps, Prometheus targets.
    let all = panels(&dashboard);
    let mut ids = BTreeSet::new();
    let mut cells: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let known_types = [
        "row",
        "timeseries",
        "stat",
        "gauge",
        "bargauge",
        "table",
        "text",
    ];
    for panel in &all {
        let id = panel["id"].as_u64().expect("a numeric panel id");
        assert!(ids.insert(id), "panel id {id} is used twice");
        let title = panel["title"].as_str().expect("a title");
        assert!(!title.is_empty(), "panel {id} has no title");
        let kind = panel["type"].as_str().expect("a type");
        assert!(known_types.contains(&kind), "panel {id}: type {kind}");
        let grid = &panel["gridPos"];
        let [h, w, x, y] = ["h", "w", "x", "y"].map(|k| {
            grid[k]
                .as_u64()
                .unwrap_or_else(|| panic!("panel {id}: gridPos.{k}"))
        });
        assert!(
            h >= 1 && (1..=24).contains(&w) && x + w <= 24,
            "panel {id}: {grid}"
        );
        for row in y..y + h {
            for column in x..x + w {
                if let Some(other) = cells.insert((row, column), id) {
                    panic!("panels {other} and {id} overlap at row {row}, column {column}");
                }
            }
        }
        if kind == "row" {
            continue;
        }
        assert_eq!(panel["datasource"], prometheus, "panel {id} ({title})");
        let targets = panel["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("panel {id} ({title}) has no targets"));
        assert!(!targets.is_empty(), "panel {id} ({title}) has no targets");
        let mut refs = BTreeSet::new();
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "panel {id}: a target without expr");
            assert!(
                refs.insert(target["refId"].as_str().expect("a refId")),
                "panel {id}: refId used twice"
            );
            assert_eq!(target["datasource"], prometheus, "panel {id}");
            // A legend can only show labels the query keeps.
            let legend = target["legendFormat"].as_str().unwrap_or_default();
            let kept = grouping_labels(expr);
            for label in legend
                .split("{{")
                .skip(1)
                .filter_map(|part| part.split("}}").next())
            {
                let label = label.trim();
                assert!(
                    kept.as_ref().is_none_or(|kept| kept.contains(label)),
                    "panel {id} ({title}): legend shows {{{{{label}}}}}, the query keeps {kept:?}"
                );
            }
        }
    }
    assert!(
        all.iter().filter(|p| p["type"] != "row").count() >= 12,
        "panels"
    );

    // Every variable a query uses is defined (or one of Grafana's own).
    let builtins = ["__rate_interval", "__interval", "__range"];
    let mut queries: Vec<(String, String)> = panel_exprs(&dashboard);
    for variable in variables {
        if let Some(query) = variable_query(variable) {
            queries.push((format!("variable {}", variable["name"]), query.to_owned()));
        }
    }
    for (place, expr) in &queries {
        for variable in grafana_variables(expr) {
            assert!(
                names.contains(&variable.as_str()) || builtins.contains(&variable.as_str()),
                "{place} uses ${variable}, which is not defined"
            );
        }
    }
}

/// The labels an aggregation keeps (`sum by (a, b)`), or None for an expression without `by`.
fn grouping_labels(expr: &str) -> Option<BTreeSet<String>> {
    let mut kept: Option<BTreeSet<String>> = None;
    for part in expr.split(" by (").skip(1) {
        let list = part.split(')').next().unwrap_or_default();
        kept.get_or_insert_with(BTreeSet::new)
            .extend(list.split(',').map(|l| l.trim().to_owned()));
    }
    kept
}

/// `$name` and `${name}` in a query.
fn grafana_variables(expr: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for part in expr.split('$').skip(1) {
        let part = part.strip_prefix('{').unwrap_or(part);
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        found.insert(name);
    }
    found
}

/// A query with Grafana's variables replaced the way Grafana would, for promtool.
fn substitute_variables(expr: &str) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').expect("a closing brace");
                (&braced[..end], &braced[end + 1..])
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        out.push_str(match name {
            "__rate_interval" | "__interval" => "1m",
            "__range" => "1h",
            _ => ".*",
        });
        rest = tail;
    }
    out.push_str(rest);
    out
}

// ---- (c) promtool ---------------------------------------------------------------------------

/// `promtool ARGS` from `dir`, or None (with a message) where promtool is not installed.
fn promtool(args: &[&str], dir: &Path) -> Option<Output> {
    match Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(output) => Some(output),
        Err(error) => {
            eprintln!(
                "SKIPPED: promtool is not installed ({error}); `scripts/install-deps.sh test` \
                 installs it (Debian's prometheus package)"
            );
            None
        }
    }
}

fn assert_success(what: &str, output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{what}:\n{stdout}{stderr}");
    assert!(output.status.success(), "{what} failed:\n{stdout}{stderr}");
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let Some(check) = promtool(&["check", "rules", ALERTS], root()) else {
        return;
    };
    assert_success("promtool check rules", &check);
    let dir = root().join("deploy/prometheus");
    let Some(test) = promtool(&["test", "rules", "alerts_test.yml"], &dir) else {
        return;
    };
    assert_success("promtool test rules", &test);
}

#[test]
fn every_alert_has_runbook_annotations_and_a_firing_and_a_quiet_test() {
    let tests = parse_yaml(&read(ALERTS_TEST), ALERTS_TEST).remove(0);
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in seq(&tests, &["tests"]) {
        for expectation in seq(case, &["alert_rule_test"]) {
            let name = text(expectation, &["alertname"]).to_owned();
            if seq(expectation, &["exp_alerts"]).is_empty() {
                quiet.insert(name);
            } else {
                fires.insert(name);
            }
        }
    }
    let titles: BTreeSet<String> = panels(&dashboard())
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_owned())
        .collect();
    let rules = alert_rules();
    assert!(rules.len() >= 6, "{} rules", rules.len());
    for rule in &rules {
        let name = text(rule, &["alert"]);
        assert!(fires.contains(name), "{name}: no test expects it to fire");
        assert!(
            quiet.contains(name),
            "{name}: no test expects it to stay quiet"
        );
        let severity = text(rule, &["labels", "severity"]);
        assert!(
            severity == "warning" || severity == "critical",
            "{name}: {severity}"
        );
        for key in ["summary", "description", "runbook"] {
            assert!(
                !text(rule, &["annotations", key]).trim().is_empty(),
                "{name}: no {key}"
            );
        }
        // The runbook's steps are numbered, and the panels it sends the reader to exist.
        let runbook = text(rule, &["annotations", "runbook"]);
        assert!(
            runbook.starts_with("1. ") && runbook.contains("\n2. "),
            "{name}: runbook steps"
        );
        let chars: Vec<char> = runbook.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '"' {
                let end = skip_string(&chars, i);
                let quoted: String = chars[i + 1..end - 1].iter().collect();
                let assigned = i > 0 && matches!(chars[i - 1], '=' | '~');
                if !assigned && !quoted.contains('{') {
                    assert!(
                        titles.contains(&quoted),
                        "{name}: the runbook names panel \"{quoted}\", the dashboard has {titles:?}"
                    );
                }
                i = end;
            } else {
                i += 1;
            }
        }
    }
}

#[test]
fn dashboard_queries_parse_as_promql() {
    let dashboard = dashboard();
    let mut queries = panel_exprs(&dashboard);
    for variable in templating(&dashboard)
        .iter()
        .filter(|v| v["type"] == "query")
    {
        if let Some(promql) = variable_query(variable).and_then(variable_promql) {
            queries.push((format!("variable {}", variable["name"]), promql));
        }
    }
    // Each query as a recording rule: promtool parses it.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, (place, expr)) in queries.iter().enumerate() {
        let expr = serde_json::to_string(&substitute_variables(expr)).unwrap();
        rules.push_str(&format!(
            "      # {place}\n      - record: dashboard:query_{n}\n        expr: {expr}\n"
        ));
    }
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("dashboard.yml"), &rules).unwrap();
    let Some(check) = promtool(&["check", "rules", "dashboard.yml"], dir.path()) else {
        return;
    };
    assert_success(&format!("promtool check rules of\n{rules}"), &check);
}

// ---- (d) the operator component -------------------------------------------------------------

fn component_file(name: &str) -> Value {
    parse_yaml(
        &read(&format!("{COMPONENT}/{name}")),
        &format!("{COMPONENT}/{name}"),
    )
    .remove(0)
}

/// A role's config file as the pods mount it (the ConfigMap's copy), as TOML.
fn mounted_config(role: &str) -> toml::Table {
    read(&format!("deploy/k8s/config/{role}.toml"))
        .parse()
        .expect("valid TOML")
}

/// What every ScaledObject must say, checked on the files and on kustomize's output alike.
fn assert_scaled_object(object: &Value, deployment: &str, group: &str, partitions: i64) {
    let what = format!("ScaledObject {deployment}");
    assert_eq!(text(object, &["apiVersion"]), "keda.sh/v1alpha1", "{what}");
    assert_eq!(text(object, &["metadata", "name"]), deployment, "{what}");
    assert_eq!(
        text(object, &["spec", "scaleTargetRef", "name"]),
        deployment,
        "{what}"
    );
    assert_eq!(
        int(object, &["spec", "maxReplicaCount"]),
        partitions,
        "{what}: capped at the partition count"
    );
    assert!(int(object, &["spec", "minReplicaCount"]) >= 1, "{what}");
    let triggers = seq(object, &["spec", "triggers"]);
    assert_eq!(triggers.len(), 1, "{what}");
    let trigger = &triggers[0];
    assert_eq!(text(trigger, &["type"]), "kafka", "{what}");
    assert_eq!(
        text(trigger, &["metadata", "consumerGroup"]),
        group,
        "{what}"
    );
    assert_eq!(text(trigger, &["metadata", "topic"]), TOPIC, "{what}");
    assert_eq!(
        text(trigger, &["metadata", "allowIdleConsumers"]),
        "false",
        "{what}"
    );
    let threshold: u64 = text(trigger, &["metadata", "lagThreshold"])
        .parse()
        .expect("lagThreshold is a number in a string");
    assert!(threshold > 0, "{what}");
}

#[test]
fn operator_component_matches_the_base_and_the_role_configs() {
    let kustomization = component_file("kustomization.yaml");
    assert_eq!(
        text(&kustomization, &["apiVersion"]),
        "kustomize.config.k8s.io/v1alpha1"
    );
    assert_eq!(text(&kustomization, &["kind"]), "Component");

    // Max replicas: the partitions `kafkad topic ensure` creates (the topic-init Job's settings).
    let base = parse_yaml(&read("deploy/k8s/kustomization.yaml"), "kustomization").remove(0);
    let literals: BTreeMap<String, String> = seq(&base, &["configMapGenerator"])
        .iter()
        .find(|g| g["name"] == "kafkad-env")
        .map(|g| strings(g, &["literals"]))
        .expect("the kafkad-env generator")
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=VALUE");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let print = assert_config_valid("topic-init", &["--role", "producer"], &literals);
    let partitions: i64 = printed(&print, "partitions").parse().expect("a number");

    for (deployment, group) in SCALED {
        let role = deployment.trim_start_matches("kafkad-");
        let object = component_file(&format!("scaledobject-{role}.yaml"));
        assert_scaled_object(&object, deployment, group, partitions);
        // The group and topic are the ones the role's pods consume with, and KEDA reads the
        // brokers the pods are pointed at.
        let config = mounted_config(role);
        assert_eq!(config["kafka"]["group.id"].as_str(), Some(group));
        assert_eq!(config["topic"].as_str(), Some(TOPIC));
        let metadata = at(&object, &["spec", "triggers"])[0]["metadata"].clone();
        assert_eq!(
            text(&metadata, &["bootstrapServers"]),
            literals["KAFKAD_KAFKA__BOOTSTRAP_SERVERS"],
            "{deployment}: bootstrapServers differs from the kafkad-env ConfigMap"
        );
        assert_eq!(
            config["kafka"]["auto.offset.reset"].as_str(),
            Some(text(&metadata, &["offsetResetPolicy"])),
            "{deployment}"
        );
    }

    // The PrometheusRule is alerts.yml, regenerated by `make k8s-rules`.
    let rule = component_file("prometheusrule.yaml");
    assert_eq!(text(&rule, &["kind"]), "PrometheusRule");
    let alerts = parse_yaml(&read(ALERTS), ALERTS).remove(0);
    assert_eq!(
        at(&rule, &["spec"]),
        &alerts,
        "{COMPONENT}/prometheusrule.yaml differs from {ALERTS}: run `make k8s-rules`"
    );
}

#[test]
fn operator_overlay_renders_the_service_monitor_and_both_scaled_objects() {
    let render = |dir: &str| -> Option<Vec<Value>> {
        let output = match Command::new("kubectl")
            .args(["kustomize", dir])
            .current_dir(root())
            .output()
        {
            Ok(output) => output,
            Err(error) => {
                eprintln!("SKIPPED: kubectl is not installed ({error})");
                return None;
            }
        };
        assert!(
            output.status.success(),
            "kubectl kustomize {dir}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Some(parse_yaml(&String::from_utf8_lossy(&output.stdout), dir))
    };
    let Some(rendered) = render(OVERLAY) else {
        return;
    };
    let find = |kind: &str, name: &str| -> &Value {
        rendered
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{OVERLAY} renders no {kind} {name}"))
    };

    let partitions = 3;
    for (deployment, group) in SCALED {
        let object = find("ScaledObject", deployment);
        assert_scaled_object(object, deployment, group, partitions);
        // The target exists, and its replica count is left to KEDA's autoscaler.
        let target = find("Deployment", deployment);
        assert!(
            at(target, &["spec"]).get("replicas").is_none(),
            "{deployment}: spec.replicas would fight the autoscaler"
        );
        assert_eq!(
            text(object, &["metadata", "labels", "app.kubernetes.io/part-of"]),
            "kafkad"
        );
    }
    // The producer is not autoscaled and keeps its replicas.
    assert_eq!(
        int(find("Deployment", "kafkad-producer"), &["spec", "replicas"]),
        2
    );

    // The ServiceMonitor selects the kafkad-metrics Service by its labels, on a port it has;
    // the scrape job is named after the Service, as KafkadTargetDown expects.
    let monitor = find("ServiceMonitor", "kafkad");
    let service = find("Service", "kafkad-metrics");
    let service_labels = mapping(service, &["metadata", "labels"]);
    for (key, value) in mapping(monitor, &["spec", "selector", "matchLabels"]) {
        assert_eq!(service_labels.get(key), Some(value), "selector {key:?}");
    }
    assert!(
        at(monitor, &["spec"]).get("jobLabel").is_none(),
        "job = Service name"
    );
    let service_ports: BTreeSet<&str> = seq(service, &["spec", "ports"])
        .iter()
        .map(|p| text(p, &["name"]))
        .collect();
    for endpoint in seq(monitor, &["spec", "endpoints"]) {
        assert!(service_ports.contains(text(endpoint, &["port"])));
        assert_eq!(text(endpoint, &["path"]), "/metrics");
    }
    let up_rule = alert_rules()
        .into_iter()
        .find(|r| r["alert"] == "KafkadTargetDown")
        .expect("KafkadTargetDown");
    assert!(
        text(&up_rule, &["expr"]).contains(r#"job=~"kafkad.*""#),
        "KafkadTargetDown's job selector"
    );
    assert!(text(service, &["metadata", "name"]).starts_with("kafkad"));

    // The rules arrive as a PrometheusRule.
    find("PrometheusRule", "kafkad");

    // Without the component nothing needs the operator's or KEDA's CRDs.
    let base = render("deploy/k8s").expect("kubectl exists");
    for object in &base {
        let api = text(object, &["apiVersion"]);
        assert!(
            !api.starts_with("monitoring.coreos.com/") && !api.starts_with("keda.sh/"),
            "the base needs a CRD: {api} {}",
            text(object, &["kind"])
        );
    }
}
