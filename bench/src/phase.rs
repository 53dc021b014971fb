//! `kafkad-bench phase`: one measured run, in the process that measures it.

use kafkad::config::{LoadRequest, Role};
use kafkad::telemetry::logging;

use crate::cli::{Phase, PhaseArgs};
use crate::kafkad_side::{kafkad_consume, kafkad_produce, kafkad_roundtrip};
use crate::measure::{peak_rss_mb, PhaseResult};
use crate::reference::{
    reference_batch, reference_produce, reference_roundtrip, reference_single, Kind,
};
use crate::settings::{payload_override, role_settings, Target};
use crate::BenchError;

/// Runs the phase `args` names and measures it.
pub async fn run(args: &PhaseArgs, request: &LoadRequest) -> Result<PhaseResult, BenchError> {
    let target = Target {
        bootstrap: &args.bootstrap,
        mock: args.mock,
        topic: &args.topic,
        group: args.group.as_deref(),
    };
    let messages = args.messages;
    let mut producer_extra = payload_override(args.payload_bytes);
    producer_extra.push(("producer.count", messages.to_string()));
    if args.phase.paced() {
        producer_extra.push(("producer.rate", args.rate.to_string()));
    }
    let settings = role_settings(request, args.phase.role(), &target, &producer_extra)?;
    logging::init(&settings.log);
    let producer_settings = || {
        let target = Target {
            group: None,
            ..target
        };
        role_settings(request, Role::Producer, &target, &producer_extra)
    };
    let mut result = match args.phase {
        Phase::ProduceKafkad => kafkad_produce(settings, messages).await?,
        Phase::ProduceReference | Phase::ProduceReferenceCodec => {
            let kind = kind_of(args.phase);
            blocking(move || reference_produce(kind, &settings, messages)).await?
        }
        Phase::SingleKafkad | Phase::BatchKafkad => {
            kafkad_consume(args.phase, settings, messages).await?
        }
        Phase::SingleReference | Phase::SingleReferenceCodec => {
            let kind = kind_of(args.phase);
            blocking(move || reference_single(kind, &settings, messages)).await?
        }
        Phase::BatchReference | Phase::BatchReferenceCodec => {
            let kind = kind_of(args.phase);
            blocking(move || reference_batch(kind, &settings, messages)).await?
        }
        Phase::RoundtripKafkad => {
            kafkad_roundtrip(settings, producer_settings()?, messages).await?
        }
        Phase::RoundtripReference => {
            let producer_settings = producer_settings()?;
            let rate = args.rate;
            blocking(move || reference_roundtrip(&settings, &producer_settings, messages, rate))
                .await?
        }
    };
    result.peak_rss_mb = peak_rss_mb();
    Ok(result)
}

/// Which reference a reference phase runs.
fn kind_of(phase: Phase) -> Kind {
    match phase {
        Phase::ProduceReferenceCodec | Phase::SingleReferenceCodec | Phase::BatchReferenceCodec => {
            Kind::Codec
        }
        _ => Kind::Raw,
    }
}

/// Runs a reference loop (blocking rdkafka calls) off the async workers.
async fn blocking(
    run: impl FnOnce() -> Result<PhaseResult, BenchError> + Send + 'static,
) -> Result<PhaseResult, BenchError> {
    tokio::task::spawn_blocking(run)
        .await
        .map_err(|e| BenchError::Reference(e.to_string()))?
}
