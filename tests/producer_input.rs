//! The producer sending real input, on librdkafka's mock cluster: lines of a file become
//! records, byte for byte, with their keys and the configured headers; lines that cannot be
//! records are counted by kind and make the run exit 1; the end of standard input ends the
//! run, and standard input failing mid-run ends it with one line and the accounting. Each
//! test reads the topic back and reconciles the lines sent with the records found.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use kafkad::config::Role;
use kafkad::roles::{ProducerReport, RoleError};
use rdkafka::message::{Headers, Message, OwnedMessage};
use support::process::kafkad_command;
use support::*;

const WAIT: Duration = Duration::from_secs(60);

fn input_file(lines: &[&[u8]]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("input file");
    for line in lines {
        file.write_all(line).expect("write");
        file.write_all(b"\n").expect("write");
    }
    file.flush().expect("flush");
    file
}

/// Runs a producer reading a file of `lines`, with `extra` settings, on the mock; its outcome.
async fn send_file(
    mock: &MockTopology,
    lines: &[&[u8]],
    extra: &[(&str, &str)],
) -> Result<ProducerReport, RoleError> {
    let file = input_file(lines);
    let path = file.path().display().to_string();
    let mut settings = vec![("producer.source.file", path.as_str())];
    settings.extend_from_slice(extra);
    let run = spawn_producer(mock.settings(Role::Producer, &settings));
    tokio::time::timeout(WAIT, run.task)
        .await
        .expect("the end of the file ends the run")
        .expect("task")
}

/// The records of the test topic by value, each with its key and headers.
fn records_by_value(mock: &MockTopology) -> BTreeMap<Vec<u8>, OwnedMessage> {
    read_topic(&mock.bootstrap, TOPIC, 3)
        .into_iter()
        .map(|record| (record.payload().unwrap_or_default().to_vec(), record))
        .collect()
}

/// Prints and checks the reconciliation of the lines meant to be sent with the records found.
fn reconcile_lines(expected: &[&[u8]], found: &BTreeMap<Vec<u8>, OwnedMessage>) {
    let lost = expected.iter().filter(|v| !found.contains_key(**v)).count();
    let unexpected = found
        .keys()
        .filter(|v| !expected.contains(&v.as_slice()))
        .count();
    println!("reconciliation: {} lines to send", expected.len());
    println!(
        "records found {}  lost {lost}  unexpected {unexpected}",
        found.len()
    );
    assert_eq!((lost, unexpected, found.len()), (0, 0, expected.len()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_become_records_with_their_keys_and_bad_lines_are_counted_by_kind() {
    let mock = MockTopology::start(3);
    let good: [&[u8]; 3] = [
        br#"{"user": "ann", "order": 1}"#,
        br#"{"user": 7, "items": [1, 2]}"#,
        br#"{"user": null, "note": "no key"}"#,
    ];
    let big = format!("{{\"user\": \"x\", \"pad\": \"{}\"}}", "p".repeat(2_000));
    let outcome = send_file(
        &mock,
        &[
            good[0],
            b"{not json",
            good[1],
            br#"{"order": 2}"#,
            big.as_bytes(),
            good[2],
        ],
        &[
            ("producer.format", "json"),
            ("producer.key.field", "user"),
            ("producer.headers.origin", "import"),
            ("kafka.message.max.bytes", "1500"),
        ],
    )
    .await;
    let error = match outcome {
        Err(RoleError::LinesNotSent { accounting }) => accounting,
        other => panic!("three lines could not be sent: {other:?}"),
    };
    assert_eq!(
        error,
        "6 lines read: 3 accepted (3 delivered, 0 failed, 0 unacknowledged), 3 not sent (missing_key: 1, not_json: 1, too_large: 1; lines 2, 4, 5)"
    );

    let found = records_by_value(&mock);
    reconcile_lines(&good, &found);
    let key = |value: &[u8]| found[value].key().map(<[u8]>::to_vec);
    assert_eq!(key(good[0]), Some(b"ann".to_vec()));
    assert_eq!(key(good[1]), Some(b"7".to_vec()));
    assert_eq!(key(good[2]), None);
    for record in found.values() {
        let headers = record.headers().expect("headers");
        assert_eq!(headers.count(), 1);
        assert_eq!(header_text(record, "origin").as_deref(), Some("import"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_lines_with_a_delimited_key_arrive_byte_for_byte() {
    let mock = MockTopology::start(3);
    let lines: [&[u8]; 4] = [
        "k1|héllo, wörld\r".as_bytes(),
        b"k2|",
        b"k3|a|b|c",
        "k4|\u{1F600} \"quoted\" \\ tab\t".as_bytes(),
    ];
    let report = send_file(
        &mock,
        &lines,
        &[("producer.format", "text"), ("producer.key.delimiter", "|")],
    )
    .await
    .expect("every line delivered");
    assert_eq!(
        (
            report.lines,
            report.accepted,
            report.delivered,
            report.not_sent()
        ),
        (4, 4, 4, 0)
    );
    let values: Vec<&[u8]> = lines
        .iter()
        .map(|line| &line[line.iter().position(|&b| b == b'|').expect("key") + 1..])
        .collect();
    let found = records_by_value(&mock);
    reconcile_lines(&values, &found);
    for (line, value) in lines.iter().zip(&values) {
        let key = &line[..line.len() - value.len() - 1];
        assert_eq!(found[*value].key(), Some(key));
        // An empty line is an empty value, not a tombstone.
        assert!(found[*value].payload().is_some(), "{value:?}");
    }
}

/// The binary with standard input from `input`, against the mock cluster.
fn producer_process(mock: &MockTopology, format: &str) -> Command {
    let mut command = kafkad_command(&["--role", "producer"]);
    command
        .env("KAFKAD_KAFKA__BOOTSTRAP_SERVERS", &mock.bootstrap)
        .env("KAFKAD_PRODUCER__SOURCE", "stdin")
        .env("KAFKAD_PRODUCER__FORMAT", format)
        .env("KAFKAD_HTTP__LISTEN", "")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_standard_input_ends_the_run_after_the_flush() {
    let mock = MockTopology::start(3);
    let mut child = producer_process(&mock, "bytes")
        .stdin(Stdio::piped())
        .spawn()
        .expect("kafkad starts");
    let lines: Vec<Vec<u8>> = (0..1000u32)
        .map(|n| [n.to_be_bytes().as_slice(), b"\xff\x00 line"].concat())
        .filter(|line| !line.contains(&b'\n'))
        .collect();
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for line in &lines {
            stdin.write_all(line).expect("write");
            stdin.write_all(b"\n").expect("write");
        }
    }
    let output = blocking(move || child.wait_with_output().expect("exits")).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let expected: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    reconcile_lines(&expected, &records_by_value(&mock));
}

/// Standard input that breaks mid-run (the writer's connection reset): what was read is
/// flushed and delivered, and one line names the failure, the line it came after and the
/// accounting; exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_input_failing_mid_run_is_one_line_with_the_accounting_and_exit_1() {
    use std::os::fd::OwnedFd;

    let mock = MockTopology::start(3);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let client =
        std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (mut writer, _) = listener.accept().expect("accept");
    let child = producer_process(&mock, "text")
        .stdin(Stdio::from(OwnedFd::from(client)))
        .spawn()
        .expect("kafkad starts");
    let lines: Vec<String> = (1..=100).map(|n| format!("line {n}")).collect();
    for line in &lines {
        writeln!(writer, "{line}").expect("write");
    }
    writer.flush().expect("flush");
    // Give the producer time to read them, then reset the connection: its next read fails.
    std::thread::sleep(Duration::from_secs(3));
    reset(writer);
    let output = blocking(move || child.wait_with_output().expect("exits")).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        last,
        "kafkad: reading standard input failed after line 100: Connection reset by peer (os error 104); 100 lines read: 100 accepted (100 delivered, 0 failed, 0 unacknowledged), 0 not sent"
    );
    let expected: Vec<&[u8]> = lines.iter().map(String::as_bytes).collect();
    reconcile_lines(&expected, &records_by_value(&mock));
}

/// Closes `stream` with a reset (SO_LINGER 0) instead of an orderly end.
fn reset(stream: std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a linger struct of the size given.
    let set = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "setsockopt SO_LINGER");
    drop(stream);
}
