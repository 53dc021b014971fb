//! What the types cannot check: value ranges, formats against sinks, topic names, the sink's
//! own rules, and settings that would break a role's guarantee.

use super::*;

/// Checks what the types cannot: value ranges, librdkafka's view of `[kafka]`, and settings
/// that would break a role's guarantee.
pub(super) fn validate(settings: &Settings, tree: &Map<String, Value>) -> Result<(), ConfigError> {
    check_ranges(settings, tree)?;
    let kafka = &settings.resolved_kafka;
    kafka.validate().map_err(|error| {
        let key = format!("kafka.{}", error.name);
        invalid(tree, &key, error.to_string())
    })?;
    check_guarantees(settings, tree)
}

/// Values in range: names not empty, counts and durations above 0, the batch limits in order,
/// a log filter that parses.
pub(super) fn check_ranges(
    settings: &Settings,
    tree: &Map<String, Value>,
) -> Result<(), ConfigError> {
    let fail = |key: &str, message: &str| Err(invalid(tree, key, message));
    topics::check(settings, tree)?;
    check_formats(settings, tree)?;
    if settings.topic.partitions < 1 {
        return fail("topic.partitions", "must be at least 1");
    }
    if settings.topic.replication_factor < 1 {
        return fail("topic.replication_factor", "must be at least 1");
    }
    check_topic_config(&settings.topic, tree)?;
    for (key, duration, example) in [
        ("shutdown_timeout", settings.shutdown_timeout, "30s"),
        ("summary_interval", settings.summary_interval, "10s"),
        ("stall_timeout", settings.stall_timeout, "2m"),
        ("batch.max_wait", settings.batch.max_wait, "5s"),
    ] {
        if duration.is_zero() {
            return fail(key, &format!("must be above 0 (e.g. \"{example}\")"));
        }
    }
    if !(settings.producer.rate >= 0.0 && settings.producer.rate.is_finite()) {
        return fail(
            "producer.rate",
            "must be 0 (unlimited) or a positive number of messages per second",
        );
    }
    if settings.batch.max_size < settings.batch.min_size {
        return fail(
            "batch.max_size",
            &format!(
                "must be at least batch.min_size ({})",
                settings.batch.min_size
            ),
        );
    }
    if let Err(error) = tracing_subscriber::EnvFilter::try_new(&settings.log.level) {
        return fail("log.level", &format!("not a log filter: {error}"));
    }
    check_retry(&settings.retry, tree)?;
    check_sink(&settings.sink, tree)?;
    check_transactional_sink(settings, tree)
}

/// The formats each role can use, and what they need: a registry for the schema'd formats,
/// the producer's input for its format and key.
pub(super) fn check_formats(
    settings: &Settings,
    tree: &Map<String, Value>,
) -> Result<(), ConfigError> {
    let fail = |(key, message): (&str, String)| invalid(tree, key, message);
    if let Some(registry) = &settings.schema_registry {
        check_registry(registry).map_err(fail)?;
    }
    if settings.role != Some(Role::Producer) {
        return check_consumer_format(settings).map_err(fail);
    }
    check_producer_input(&settings.producer).map_err(fail)
}

/// `[schema_registry]`: a timeout, and an http(s) address with a host.
fn check_registry(registry: &SchemaRegistrySettings) -> Result<(), Refusal> {
    if registry.timeout.is_zero() {
        return Err((
            "schema_registry.timeout",
            "must be above 0 (e.g. \"10s\")".to_owned(),
        ));
    }
    match registry.url.parse::<ureq::http::Uri>() {
        Ok(uri)
            if matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(())
        }
        _ => Err((
            "schema_registry.url",
            format!(
                "`{}` is not an http:// or https:// address with a host",
                registry.url
            ),
        )),
    }
}

/// A consumer's format: a schema'd one needs a registry; the postgres and kafka sinks write
/// the seed's message only.
fn check_consumer_format(settings: &Settings) -> Result<(), Refusal> {
    if !matches!(settings.role, Some(Role::Single | Role::Batch)) {
        return Ok(());
    }
    let consumer_format = settings.consumer.format;
    if consumer_format.schema_framing().is_some() && settings.schema_registry.is_none() {
        return Err((
            "schema_registry.url",
            format!("missing; `consumer.format = \"{consumer_format}\"` takes its schemas from a schema registry ([schema_registry] url = \"http://host:8081\")"),
        ));
    }
    let message_sink = match &settings.sink {
        SinkSettings::Postgres(_) => Some("postgres"),
        SinkSettings::Kafka(_) => Some("kafka"),
        _ => None,
    };
    match message_sink {
        Some(sink) if consumer_format != Format::KafkaMessage => Err((
            "consumer.format",
            format!("the {sink} sink writes the seed's message (kafka_message), not {consumer_format}; records of other formats go to the jsonl, http, command or log sink"),
        )),
        _ => Ok(()),
    }
}

/// The producer's input: a readable file, and a format and key that fit its source.
fn check_producer_input(producer: &ProducerSettings) -> Result<(), Refusal> {
    if let InputSource::File(path) = &producer.source {
        let readable = std::fs::metadata(path).and_then(|meta| match meta.is_dir() {
            true => Err(std::io::Error::other("it is a directory")),
            false => std::fs::File::open(path).map(drop),
        });
        if let Err(error) = readable {
            return Err((
                "producer.source",
                format!("cannot read {}: {error}", path.display()),
            ));
        }
    }
    match (&producer.source, producer.format) {
        (_, format) if format.schema_framing().is_some() => Err((
            "producer.format",
            format!("the producer sends kafka_message, json, text or bytes, not {format} (it registers no schemas)"),
        )),
        (InputSource::Generate, Format::KafkaMessage) => match producer.key {
            Some(_) => Err((
                "producer.key",
                "applies to lines of input (source = \"stdin\" or { file = ... }); generated messages are keyed by their id".to_owned(),
            )),
            None => Ok(()),
        },
        (InputSource::Generate, format) => Err((
            "producer.format",
            format!("source = \"generate\" makes the seed's messages (kafka_message), not {format}; send your own data with source = \"stdin\" or {{ file = \"/path\" }}"),
        )),
        (_, format) => match &producer.key {
            Some(LineKey::Field(_)) if format != Format::Json => Err((
                "producer.key",
                format!("a key field is read from a JSON object: it needs format = \"json\", not {format}"),
            )),
            Some(LineKey::Delimiter(delimiter)) if delimiter.is_empty() || delimiter.contains('\n') => Err((
                "producer.key",
                "a key delimiter is at least one character and no line end".to_owned(),
            )),
            Some(LineKey::Field(field)) if field.is_empty() => {
                Err(("producer.key", "names a field: { field = \"user_id\" }".to_owned()))
            }
            _ => Ok(()),
        },
    }
}

/// Topic config names as Kafka spells them (the broker judges the names and values when it
/// creates the topic), and a `min.insync.replicas` the replicas can meet.
pub(super) fn check_topic_config(
    topic: &TopicSettings,
    tree: &Map<String, Value>,
) -> Result<(), ConfigError> {
    for (name, value) in &topic.config {
        let key = format!("topic.config.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.')
        {
            return Err(invalid(
                tree,
                &key,
                "is not a topic config name: Kafka's are lowercase words joined by dots, e.g. retention.ms",
            ));
        }
        if name == MIN_INSYNC_REPLICAS {
            match value.trim().parse::<i32>() {
                Ok(n) if (1..=topic.replication_factor).contains(&n) => {}
                Ok(n) if n > topic.replication_factor => {
                    return Err(invalid(
                        tree,
                        &key,
                        format!(
                            "{n} is more than the {} replicas of topic.replication_factor: every acks=all write would be refused",
                            topic.replication_factor
                        ),
                    ))
                }
                _ => {
                    return Err(invalid(
                        tree,
                        &key,
                        format!(
                            "`{value}` is not a number of replicas from 1 to topic.replication_factor ({})",
                            topic.replication_factor
                        ),
                    ))
                }
            }
        }
    }
    Ok(())
}

/// The backoff in order: delays above 0, `max` not below `initial`, a growing multiplier, a
/// jitter fraction.
pub(super) fn check_retry(
    retry: &RetrySettings,
    tree: &Map<String, Value>,
) -> Result<(), ConfigError> {
    let fail = |key: &str, message: String| Err(invalid(tree, key, message));
    if retry.initial.is_zero() {
        return fail("retry.initial", "must be above 0 (e.g. \"1s\")".to_owned());
    }
    if retry.max_elapsed.is_zero() {
        return fail(
            "retry.max_elapsed",
            "must be above 0 (e.g. \"24h\")".to_owned(),
        );
    }
    if retry.max < retry.initial {
        return fail(
            "retry.max",
            format!(
                "must be at least retry.initial ({})",
                humantime::format_duration(retry.initial)
            ),
        );
    }
    if !(retry.multiplier.is_finite() && retry.multiplier >= 1.0) {
        return fail(
            "retry.multiplier",
            "must be a number of at least 1 (1 keeps the delay constant)".to_owned(),
        );
    }
    if !(0.0..=1.0).contains(&retry.jitter) {
        return fail(
            "retry.jitter",
            "must be a fraction from 0 to 1 (0.2 varies each delay by up to 20%)".to_owned(),
        );
    }
    Ok(())
}

/// What can be known about a sink before it runs: the URL parses, the command exists.
pub(super) fn check_sink(
    sink: &SinkSettings,
    tree: &Map<String, Value>,
) -> Result<(), ConfigError> {
    let fail = |key: &str, message: String| Err(invalid(tree, key, message));
    match sink {
        // The sinks taking part in a transaction: check_transactional_sink.
        SinkSettings::Log {}
        | SinkSettings::Jsonl { .. }
        | SinkSettings::Postgres(_)
        | SinkSettings::Kafka(_) => Ok(()),
        SinkSettings::Http { url, timeout, .. } => {
            if timeout.is_zero() {
                return fail("sink.timeout", "must be above 0 (e.g. \"30s\")".to_owned());
            }
            match url.parse::<ureq::http::Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.host().is_some_and(|h| !h.is_empty()) =>
                {
                    Ok(())
                }
                Ok(_) => fail(
                    "sink.url",
                    format!("`{url}` is not an http:// or https:// address with a host"),
                ),
                Err(error) => fail("sink.url", format!("`{url}` is not a URL: {error}")),
            }
        }
        SinkSettings::Command { command, timeout } => {
            if timeout.is_zero() {
                return fail("sink.timeout", "must be above 0 (e.g. \"30s\")".to_owned());
            }
            let Some(program) = command.first().filter(|p| !p.is_empty()) else {
                return fail(
                    "sink.command",
                    "must name a program, e.g. [\"sh\", \"-c\", \"cat >> out.jsonl\"]".to_owned(),
                );
            };
            match find_program(program) {
                Some(_) => Ok(()),
                None => fail(
                    "sink.command",
                    format!("program `{program}` not found (not an executable file, nor on PATH)"),
                ),
            }
        }
    }
}

/// A sink taking part in a transaction: its keys agree with each other and with the consumer.
pub(super) fn check_transactional_sink(
    settings: &Settings,
    tree: &Map<String, Value>,
) -> Result<(), ConfigError> {
    let fail = |key: &str, message: String| Err(invalid(tree, key, message));
    let timeout = match &settings.sink {
        SinkSettings::Postgres(postgres) => {
            if let Err(why) = postgres.url.check() {
                return fail("sink.url", why);
            }
            if postgres.on_conflict.is_some() && postgres.delivery == Delivery::ExactlyOnce {
                return fail(
                    "sink.on_conflict",
                    "applies to delivery = \"at_least_once\" only: exactly_once writes each record once already".to_owned(),
                );
            }
            let keyed = !postgres.conflict_key.is_empty();
            if postgres.on_conflict.is_some() != keyed {
                return fail(
                    "sink.conflict_key",
                    "on_conflict and conflict_key go together: on_conflict = \"ignore\" with the columns of a unique key, e.g. conflict_key = [\"producer_id\", \"message_id\"]".to_owned(),
                );
            }
            if let Some(bad) = postgres
                .conflict_key
                .iter()
                .find(|c| !crate::sink::postgres::COLUMNS.contains(&c.as_str()))
            {
                return fail(
                    "sink.conflict_key",
                    format!(
                        "`{bad}` is not a column the sink writes; they are {}",
                        crate::sink::postgres::COLUMNS.join(", ")
                    ),
                );
            }
            if postgres.table == postgres.offsets_table {
                return fail(
                    "sink.offsets_table",
                    "must differ from sink.table".to_owned(),
                );
            }
            postgres.timeout
        }
        SinkSettings::Kafka(kafka) => {
            if let Err(why) = kafka_topic_name(&kafka.topic) {
                return fail("sink.topic", why);
            }
            let same_cluster = !kafka.kafka.0.contains_key("bootstrap.servers");
            // Any topic the consumer reads, a list's or a pattern's too.
            if same_cluster && settings.topic.selection.selects(&kafka.topic) {
                return fail(
                    "sink.topic",
                    "must differ from topic.name (and be none of the topics it names): every output message would be read again as input, forever".to_owned(),
                );
            }
            settings.resolved_sink_kafka.validate().map_err(|error| {
                invalid(
                    tree,
                    &format!("sink.kafka.{}", error.name),
                    error.to_string(),
                )
            })?;
            kafka.timeout
        }
        _ => return Ok(()),
    };
    if timeout.is_zero() {
        return fail("sink.timeout", "must be above 0 (e.g. \"30s\")".to_owned());
    }
    if settings.sink.delivery() == Some(Delivery::ExactlyOnce)
        && settings.consumer.ordering != ProcessingOrder::Partition
    {
        return fail(
            "consumer.ordering",
            "must be \"partition\" with a sink's delivery = \"exactly_once\": each call writes its partitions' next offsets, and with key ordering two calls of one partition could write them out of order; set ordering = \"partition\" or delivery = \"at_least_once\"".to_owned(),
        );
    }
    Ok(())
}

/// Where `program` would be run from: itself when it holds a `/`, else the first executable
/// of that name on `PATH`.
pub(super) fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = PathBuf::from(program);
        return executable(&path).then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
}

/// A topic name Kafka accepts: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub(super) fn kafka_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > 249 {
        return Err(format!(
            "is {} characters long; Kafka accepts at most 249",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a topic name Kafka accepts"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "contains {bad:?}; Kafka topic names use only ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// A consumer without a group, and the properties kafkad owns ([`OWNED_PROPERTIES`]) set in
/// `[kafka]`: any value there could only agree with kafkad's or break the guarantee.
pub(super) fn check_guarantees(
    settings: &Settings,
    tree: &Map<String, Value>,
) -> Result<(), ConfigError> {
    if let Some(owned) = OWNED_PROPERTIES
        .into_iter()
        .find(|key| settings.resolved_kafka.get(key).is_some())
    {
        return Err(invalid(
            tree,
            &format!("kafka.{owned}"),
            "is kafkad's to set: each consumer stores an offset only once its record is finished, and the single role's auto commit or the batch role's commit after each batch sends what is stored; remove it",
        ));
    }
    match settings.role {
        Some(Role::Single | Role::Batch) if settings.group_id().is_none() => Err(invalid(
            tree,
            "kafka.group.id",
            "consumers need a consumer group",
        )),
        _ => Ok(()),
    }
}
