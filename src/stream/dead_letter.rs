//! Dead-letter headers (CONTRACTS §6): the original key and value go out untouched, and the
//! reason travels in the headers Kafka Connect uses, so existing DLQ tooling reads them.

use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};

use crate::ping::PingError;

/// The stage that refused the message, in Kafka Connect's vocabulary.
const STAGE: &str = "VALUE_CONVERTER";

pub fn headers(m: &BorrowedMessage<'_>, e: &PingError) -> OwnedHeaders {
    let partition = m.partition().to_string();
    let offset = m.offset().to_string();
    let class = format!("beckon::ping::PingError::{}", e.kind());
    let message = e.to_string();
    [
        ("__connect.errors.topic", m.topic()),
        ("__connect.errors.partition", partition.as_str()),
        ("__connect.errors.offset", offset.as_str()),
        ("__connect.errors.stage", STAGE),
        ("__connect.errors.exception.class.name", class.as_str()),
        ("__connect.errors.exception.message", message.as_str()),
        // The short reason, as the `beckon_dead_letters_total` label names it.
        ("beckon.error.reason", e.kind()),
    ]
    .into_iter()
    .fold(OwnedHeaders::new_with_capacity(7), |h, (key, value)| {
        h.insert(Header {
            key,
            value: Some(value),
        })
    })
}
