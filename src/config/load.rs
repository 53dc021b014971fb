//! Loading: the layers merged, deserialized into [`Settings`], secrets resolved, validated.

use super::defaults;
use super::secrets::{resolve_kafka, resolve_sink_headers, resolve_value};
use super::validate::validate;
use super::*;

/// What the command line asks for; the environment is passed in so tests need not touch the
/// process environment.
#[derive(Debug, Clone, Default)]
pub struct LoadRequest {
    /// `--config`.
    pub file: Option<PathBuf>,
    /// `--role`.
    pub role: Option<Role>,
    /// `--topic`.
    pub topic: Option<String>,
    /// `--set KEY=VALUE`, in order.
    pub overrides: Vec<(String, String)>,
    /// The environment (normally `std::env::vars()`).
    pub env: Vec<(String, String)>,
    /// Whether the command needs a role (`run`) or works without one (`topic ensure`).
    pub role_required: bool,
}

impl LoadRequest {
    /// A request that reads the real process environment.
    pub fn with_process_env(mut self) -> Self {
        self.env = std::env::vars().collect();
        self
    }
}

/// Merged settings plus the merged value tree they came from (which keeps each value's origin).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub settings: Settings,
    /// `KAFKAD_*` variables Kubernetes injected for a Service, set aside rather than read as
    /// configuration (see [`sources::is_service_link`]), by name.
    pub service_links: Vec<String>,
    tree: Map<String, Value>,
}

/// Loads, layers and validates the configuration.
pub fn load(request: &LoadRequest) -> Result<LoadedConfig, ConfigError> {
    let file = request.file.as_deref().map(TomlSource::file).transpose()?;
    let env = EnvSource::new(&request.env)?;
    let mut flags = FlagSource::default();
    if let Some(role) = request.role {
        flags.set("role", role.as_str(), "--role");
    }
    if let Some(topic) = &request.topic {
        flags.set("topic", topic, "--topic");
    }
    for (key, value) in &request.overrides {
        flags.set(key, value, &format!("--set {key}"));
    }

    // The role picks the defaults, so it is read from the upper layers first.
    let upper = build(None, file.as_ref(), &env, &flags)?;
    let role = match upper.get("role") {
        None => None,
        Some(value) => {
            let text = value.clone().into_string().unwrap_or_default();
            Some(Role::parse(&text).ok_or_else(|| ConfigError::Invalid {
                key: "role".to_owned(),
                origin: Origin::describe(value.origin()),
                message: format!("unknown role `{text}`; allowed: producer, single, batch"),
            })?)
        }
    };
    if role.is_none() && request.role_required {
        return Err(ConfigError::NoRole);
    }

    let tree = build(role, file.as_ref(), &env, &flags)?;
    let mut settings: Settings = Value::new(None, ValueKind::Table(tree.clone()))
        .try_deserialize()
        .map_err(|e| deserialize_error(e, &tree))?;
    settings.role = role;
    settings.topic.name = settings
        .topic
        .selection
        .single()
        .unwrap_or_default()
        .to_owned();
    settings.resolved_kafka = resolve_kafka(&settings.kafka.0, &request.env, &tree)?;
    if settings.resolved_kafka.get("client.id").is_none() {
        let client_id = settings.default_client_id();
        settings.resolved_kafka.set("client.id", client_id);
    }
    settings.resolved_sink_headers = resolve_sink_headers(&settings.sink, &request.env, &tree)?;
    match &settings.sink {
        SinkSettings::Postgres(postgres) => {
            if let Some(password) = &postgres.password.0 {
                let text = resolve_value(password, "sink.password", &request.env, &tree)?;
                settings.resolved_sink_password = ResolvedSecret(Some(text));
            }
        }
        SinkSettings::Kafka(kafka) => {
            settings.resolved_sink_kafka = sinks::output_properties(
                &settings.resolved_kafka,
                &kafka.kafka.0,
                |name, value| {
                    resolve_value(value, &format!("sink.kafka.{name}"), &request.env, &tree)
                },
            )?;
        }
        _ => {}
    }
    validate(&settings, &tree)?;
    Ok(LoadedConfig {
        settings,
        service_links: env.service_links,
        tree,
    })
}

pub(super) fn build(
    role: Option<Role>,
    file: Option<&TomlSource>,
    env: &EnvSource,
    flags: &FlagSource,
) -> Result<Map<String, Value>, ConfigError> {
    let mut builder = config::Config::builder();
    for layer in defaults::layers(role) {
        builder = builder.add_source(TomlSource::defaults(layer));
    }
    if let Some(file) = file {
        builder = builder.add_source(file.clone());
    }
    let merged = builder
        .add_source(env.clone())
        .add_source(flags.clone())
        .build()
        .and_then(|c| config::Source::collect(&c))
        .map_err(|e| ConfigError::Invalid {
            key: "(configuration)".to_owned(),
            origin: "merge".to_owned(),
            message: e.to_string(),
        })?;
    Ok(merged)
}

/// The origin of a value, or of the first leaf under a table.
pub(super) fn first_origin(value: &Value) -> Option<&str> {
    match &value.kind {
        ValueKind::Table(table) => table.values().find_map(first_origin),
        _ => value.origin(),
    }
}

/// Looks a dotted key up in the merged tree (keeping `[kafka]` names whole).
pub(super) fn lookup<'t>(tree: &'t Map<String, Value>, key: &str) -> Option<&'t Value> {
    let path = sources::split_key(key);
    let mut current = tree.get(&path[0])?;
    for segment in &path[1..] {
        let ValueKind::Table(table) = &current.kind else {
            return None;
        };
        current = table.get(segment)?;
    }
    Some(current)
}

pub(super) fn origin_of(tree: &Map<String, Value>, key: &str) -> String {
    Origin::describe(lookup(tree, key).and_then(first_origin))
}

impl LoadedConfig {
    /// Where the value of `key` (`http.listen`, `kafka.acks`, ...) came from: `default`,
    /// `file <path>`, `env <VAR>` or `flag <flag>`.
    pub fn origin(&self, key: &str) -> String {
        origin_of(&self.tree, key)
    }

    /// `config print`: the effective configuration as TOML, each value followed by its source,
    /// secrets redacted.
    pub fn render(&self) -> String {
        render::render(&self.settings, &self.tree, &self.service_links)
    }
}
