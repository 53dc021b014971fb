//! What the documentation says about sinks, dead letters and exit codes, held against the code
//! that decides it: the sentences are looked up where they live (docs/failures.md, or every
//! page: README.md and docs/*.md), and the code asked the same question. An edit of the
//! documentation that changes one of these promises must change the code with it, and the
//! other way round.

mod support;

use std::collections::BTreeSet;

use kafkad::dlq::is_permanent;
use kafkad::sink::{SinkError, COMMAND_REJECTS};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use support::process::run_kafkad;

/// docs/failures.md: dead letters, when processing fails, exit codes.
fn failures_page() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/failures.md");
    std::fs::read_to_string(path).expect("docs/failures.md")
}

/// Every page of the documentation, README.md and docs/*.md, in a fixed order, apart by a
/// blank line so that no two pages' paragraphs run into one.
fn every_page() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    assert!(
        pages.iter().any(|path| path.ends_with("failures.md")),
        "docs/ without failures.md: {pages:?}"
    );
    pages.insert(0, root.join("README.md"));
    pages
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A page's paragraphs, each joined into one line.
fn paragraphs(text: &str) -> Vec<String> {
    text.split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The one paragraph holding `phrase` (whitespace as in [`paragraphs`]).
fn paragraph_with(text: &str, phrase: &str) -> String {
    let found: Vec<String> = paragraphs(text)
        .into_iter()
        .filter(|p| p.contains(phrase))
        .collect();
    assert_eq!(found.len(), 1, "docs: one paragraph with {phrase:?}");
    found[0].clone()
}

/// The part of `text` after `start`, up to the next `end`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    text.split_once(start)
        .and_then(|(_, rest)| rest.split(end).next())
        .unwrap_or_else(|| panic!("docs: nothing after {start:?}"))
}

fn assert_says(text: &str, phrases: &[&str]) {
    for phrase in phrases {
        assert!(text.contains(phrase), "docs no longer say {phrase:?}");
    }
}

fn produce_error(code: RDKafkaErrorCode) -> KafkaError {
    KafkaError::MessageProduction(code)
}

/// The refusals docs/failures.md lists for a dead-letter copy, permanent (the consumer stops,
/// exit 1) or transient (retried), are classified so by `dlq::is_permanent`.
#[test]
fn dead_letter_refusals_are_permanent_or_retried_as_documented() {
    use RDKafkaErrorCode::*;
    let text = failures_page();
    let section = paragraph_with(&text, "**When the dead-letter topic cannot be written.**");
    for (phrase, codes, permanent) in [
        (
            "the copy is too large for the dead-letter topic",
            &[MessageSizeTooLarge][..],
            true,
        ),
        (
            "the principal may not write it",
            &[TopicAuthorizationFailed],
            true,
        ),
        ("the topic does not exist", &[UnknownTopicOrPartition], true),
        (
            "the broker calls the record invalid or against its policy",
            &[InvalidRecord, PolicyViolation],
            true,
        ),
        ("the dead-letter producer hit a fatal error", &[Fatal], true),
        (
            "brokers unreachable",
            &[AllBrokersDown, BrokerTransportFailure],
            false,
        ),
        (
            "too few in-sync replicas",
            &[NotEnoughReplicas, NotEnoughReplicasAfterAppend],
            false,
        ),
        ("a timeout", &[MessageTimedOut, RequestTimedOut], false),
    ] {
        assert_says(&section, &[phrase]);
        for code in codes {
            assert_eq!(
                is_permanent(&produce_error(*code)),
                permanent,
                "docs/failures.md: {phrase:?} ({code:?}) is {}",
                if permanent { "permanent" } else { "retried" }
            );
        }
    }
}

/// Wherever the documentation (any page) speaks of a dead-letter copy refused with an error
/// the code treats as permanent, it says the consumer stops, never that the copy is retried.
#[test]
fn no_paragraph_says_a_permanent_dead_letter_refusal_is_retried() {
    use RDKafkaErrorCode::*;
    let permanent = [
        MessageSizeTooLarge,
        TopicAuthorizationFailed,
        UnknownTopicOrPartition,
        InvalidRecord,
        PolicyViolation,
    ];
    for code in permanent {
        assert!(is_permanent(&produce_error(code)), "{code:?}");
    }
    let text = every_page();
    let mut checked = 0;
    for paragraph in paragraphs(&text) {
        let names_one = permanent
            .iter()
            .any(|code| paragraph.contains(&format!("`{code:?}`")));
        if !(names_one && paragraph.contains("dead-letter")) {
            continue;
        }
        checked += 1;
        assert!(
            paragraph.contains("exit 1") && !paragraph.contains("retried"),
            "docs say a permanent dead-letter refusal is retried, or not that the consumer \
             stops with exit 1: {paragraph}"
        );
    }
    assert!(
        checked > 0,
        "no paragraph names a refusal: the check is void"
    );
}

/// docs/failures.md, "When processing fails": which sink failures are retried and which are
/// not, and the `kind` labels it names for them.
#[test]
fn sink_failures_are_retried_as_documented() {
    let text = failures_page();
    let rule = paragraph_with(&text, "The sink's answer decides.");
    assert_says(
        &rule,
        &[
            "HTTP 408, 429 and 5xx",
            "exited with a status other than 65",
            "any other HTTP 4xx, any 3xx redirect",
            "a `command` exiting 65",
        ],
    );
    assert_eq!(COMMAND_REJECTS, 65);
    let status = |status| SinkError::HttpStatus {
        url: "http://x".into(),
        status,
        answer: Box::default(),
    };
    for code in 300..600 {
        let retried = matches!(code, 408 | 429) || code >= 500;
        assert_eq!(status(code).is_retryable(), retried, "HTTP {code}");
    }
    let exit = |code| SinkError::CommandExit {
        command: "x".into(),
        code: Some(code),
        stderr: String::new(),
    };
    for code in [1, 2, 64, 66, 127] {
        assert!(exit(code).is_retryable(), "exit {code}");
    }
    assert!(!exit(65).is_retryable());

    let metrics = paragraph_with(&text, "`kafkad_processing_failures_total{kind}`");
    let listed = between(&metrics, "`kafkad_processing_failures_total{kind}` (", ")");
    let named: BTreeSet<&str> = listed
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|name| !name.contains(' '))
        .collect();
    let kinds: BTreeSet<&str> = [
        status(500),
        SinkError::HttpTransport {
            url: "http://x".into(),
            reason: "refused".into(),
        },
        exit(1),
        SinkError::CommandTimeout {
            command: "x".into(),
            timeout: std::time::Duration::from_secs(1),
        },
    ]
    .iter()
    .map(SinkError::kind)
    .collect();
    assert!(
        named.is_subset(&kinds) && !named.is_empty(),
        "docs/failures.md names {named:?}, the code has {kinds:?}"
    );
}

/// The exit codes table (docs/failures.md) lists 0, 1, 2 and 130; the cheap ones are checked
/// by running kafkad: a configuration error is 2, a sink file that cannot be opened is 1
/// (before connecting).
#[test]
fn exit_codes_are_the_ones_documented() {
    let text = failures_page();
    let table = between(&text, "## Exit codes", "\n## ");
    let codes: Vec<&str> = table
        .lines()
        .filter_map(|line| line.strip_prefix("| "))
        .filter_map(|row| row.split(" |").next())
        .filter(|code| code.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(codes, ["0", "1", "2", "130"]);
    let runtime_failures = table
        .lines()
        .find(|line| line.starts_with("| 1 |"))
        .expect("the row of exit 1");
    assert_says(
        runtime_failures,
        &[
            "a dead-letter copy the broker refuses for good",
            "a `jsonl` sink file that cannot be opened",
        ],
    );
    let bad_config = run_kafkad(
        &["config", "check", "--role", "single"],
        &[
            ("KAFKAD_SINK__KIND", "http"),
            ("KAFKAD_SINK__URL", "ftp://x"),
        ],
    );
    assert_eq!(bad_config.status.code(), Some(2), "{bad_config:?}");

    let unopenable = run_kafkad(
        &["--role", "single"],
        &[
            ("KAFKAD_HTTP__LISTEN", ""),
            ("KAFKAD_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1"),
            ("KAFKAD_SINK__KIND", "jsonl"),
            ("KAFKAD_SINK__PATH", "/nonexistent/kafkad/processed.jsonl"),
        ],
    );
    let stderr = String::from_utf8_lossy(&unopenable.stderr);
    assert_eq!(unopenable.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot open sink file"), "{stderr}");
}
