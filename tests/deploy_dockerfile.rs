//! deploy/Dockerfile: a multi-stage build whose runtime stage is small, non-root and runs
//! kafkad under tini, an init that reaps orphans; checked by reading the file (no Docker
//! engine here).

mod support;

use std::collections::BTreeSet;

use support::deploy::*;

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
    // What the binary links (libssl, zlib), what the compose health check runs (curl), and
    // PID 1 (tini).
    for package in ["libssl3", "zlib1g", "curl", "tini"] {
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
/// tini is PID 1 and kafkad its child: the command sink's runs leave orphans when they are
/// killed, and PID 1 must reap them; exec form, so no shell stands between tini and kafkad.
fn dockerfile_entrypoint_runs_kafkad_under_tini_in_exec_form() {
    let stages = dockerfile();
    let runtime = stages.last().unwrap();
    let entrypoints = runtime.all("ENTRYPOINT");
    assert_eq!(entrypoints.len(), 1);
    let argv: Vec<String> = serde_json::from_str(entrypoints[0])
        .unwrap_or_else(|_| panic!("ENTRYPOINT {} is shell form", entrypoints[0]));
    assert_eq!(argv, ["/usr/bin/tini", "--", "/usr/local/bin/kafkad"]);
    // The comment above the instructions says the same, not the opposite.
    let text = read("deploy/Dockerfile");
    assert!(
        !text.contains("spawns no child"),
        "a stale claim in deploy/Dockerfile"
    );
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
