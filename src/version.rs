//! `kafkad version`: what this binary can talk: its own version, librdkafka's, and the
//! features librdkafka was built with (TLS, SASL mechanisms, compression codecs).

use rdkafka::config::ClientConfig;

/// The lines `kafkad version` prints.
pub fn describe() -> String {
    format!("kafkad {}\n", long_version())
}

/// kafkad's version, then librdkafka's and its features (clap prefixes `kafkad `).
pub fn long_version() -> String {
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    format!(
        "{}\nlibrdkafka {librdkafka}\nbuiltin.features {}",
        env!("CARGO_PKG_VERSION"),
        builtin_features().join(",")
    )
}

/// librdkafka's `builtin.features`, e.g. `gzip, snappy, ssl, sasl, lz4, zstd, sasl_scram, ...`.
pub fn builtin_features() -> Vec<String> {
    ClientConfig::new()
        .create_native_config()
        .and_then(|config| config.get("builtin.features"))
        .map(|text| text.split(',').map(|f| f.trim().to_owned()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_has_what_real_clusters_need() {
        let features = builtin_features();
        for needed in [
            "ssl",
            "sasl_plain",
            "sasl_scram",
            "sasl_oauthbearer",
            "gzip",
            "snappy",
            "lz4",
            "zstd",
        ] {
            assert!(
                features.iter().any(|f| f == needed),
                "missing {needed} in {features:?}"
            );
        }
        assert!(describe().contains("librdkafka 2."));
    }
}
