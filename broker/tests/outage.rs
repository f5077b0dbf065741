//! The embedded broker's outage switch: deliveries fail while its brokers
//! are down and succeed again once they are up.

use std::time::{Duration, Instant};

use broker::EmbeddedBroker;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use schemas::topics;
use service_kit::kafka::{KafkaSettings, ProducerTuning};

#[tokio::test]
async fn deliveries_fail_while_the_brokers_are_down_and_resume_when_up() {
    let broker = EmbeddedBroker::start(1, None).unwrap();
    let mut kafka = KafkaSettings::new(broker.bootstrap_servers());
    kafka
        .properties
        .insert("reconnect.backoff.max.ms".into(), "200".into());
    let tuning = ProducerTuning {
        delivery_timeout: Duration::from_secs(1),
        ..ProducerTuning::default()
    };
    let send = |producer| async move {
        service_kit::kafka::send(
            &producer,
            topics::DETECTIONS,
            b"cam",
            b"payload",
            Timeout::Never,
        )
        .await
    };
    let producer: rdkafka::producer::FutureProducer = kafka
        .producer_config("outage-test", &tuning)
        .create()
        .unwrap();
    send(producer.clone()).await.unwrap();

    broker.broker_down().unwrap();
    let started = Instant::now();
    let error = send(producer.clone()).await.unwrap_err();
    assert_eq!(
        error,
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    broker.broker_up().unwrap();
    let started = Instant::now();
    loop {
        match send(producer.clone()).await {
            Ok(()) => break,
            Err(error) => assert!(
                started.elapsed() < Duration::from_secs(10),
                "still failing after the brokers came back: {error}"
            ),
        }
    }
}
