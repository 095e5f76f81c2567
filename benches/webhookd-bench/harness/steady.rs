//! Single-event Publish calls at a steady rate, and the latencies of their deliveries:
//! what scenarios 2, 6 and 9 measure with.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use buffa::{Message as _, MessageField};
use webhookd::proto::webhookd::v1 as pb;
use webhookd::synthetic::repository_push;

use super::env::{Bench, Serve};
use crate::receiver::Receiver;

/// Single-event Publish calls at a steady rate, and when each was acknowledged.
pub struct Steady {
    /// Each event's id, the moment its Publish call was sent and the moment it was
    /// acknowledged.
    pub acked: Vec<(String, Instant, Instant)>,
    /// The events as encoded when published (quick mode only), for [`super::scenarios::check_exact`].
    pub published: Vec<Vec<u8>>,
}

impl Steady {
    /// Publishes `rate` single-event calls a second for `seconds`, numbering the synthetic
    /// pushes from `first`.
    pub async fn publish(
        serve: &Serve,
        token: &str,
        rate: u64,
        seconds: u64,
        first: u64,
        keep: bool,
    ) -> anyhow::Result<Self> {
        let client = serve.publisher(token);
        let mut published = vec![];
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        let mut inflight = tokio::task::JoinSet::new();
        for i in first..first + rate * seconds {
            tick.tick().await;
            let event = repository_push("acme", "petapis", i);
            if keep {
                published.push(event.encode_to_vec());
            }
            let client = client.clone();
            inflight.spawn(async move {
                let sent = Instant::now();
                let response = client
                    .publish(pb::PublishRequest {
                        events: vec![pb::PublishEvent {
                            event: MessageField::some(event),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .await?;
                Ok::<_, anyhow::Error>((
                    response.into_owned().events[0].event_id.clone(),
                    sent,
                    Instant::now(),
                ))
            });
        }
        let mut acked = Vec::new();
        while let Some(done) = inflight.join_next().await {
            acked.push(done??);
        }
        Ok(Self { acked, published })
    }

    /// Milliseconds from each acknowledged publish to its delivery's first arrival at each
    /// of subscribers `0..subscribers`, sorted. Every one of them must have arrived.
    pub async fn latencies(
        &self,
        bench: &Bench,
        receiver: &Receiver,
        subscribers: usize,
    ) -> anyhow::Result<Vec<f64>> {
        self.latencies_since(bench, receiver, subscribers, Since::Acked)
            .await
    }

    /// Milliseconds from each publish's `since` to its delivery's first arrival at each of
    /// subscribers `0..subscribers`, sorted. Every one of them must have arrived. (An
    /// arrival before the acknowledgement, which a batcher that attempts a delivery as its
    /// publish commits makes common, counts as 0 since the acknowledgement.)
    pub async fn latencies_since(
        &self,
        bench: &Bench,
        receiver: &Receiver,
        subscribers: usize,
        since: Since,
    ) -> anyhow::Result<Vec<f64>> {
        let deliveries: Vec<(String, String)> =
            sqlx::query_as("SELECT event_id::text, id::text FROM deliveries")
                .fetch_all(&bench.pool)
                .await?;
        let acked: HashMap<&str, Instant> = self
            .acked
            .iter()
            .map(|(event, sent, acked)| {
                let at = match since {
                    Since::Sent => sent,
                    Since::Acked => acked,
                };
                (event.as_str(), *at)
            })
            .collect();
        let mut latencies: Vec<f64> = {
            let seen = receiver.seen();
            deliveries
                .iter()
                .filter_map(|(event, id)| {
                    let sent = acked.get(event.as_str())?;
                    let arrival = seen.first.get(id)?;
                    arrival.subscriber.filter(|n| *n < subscribers)?;
                    Some(arrival.at.saturating_duration_since(*sent).as_secs_f64() * 1000.0)
                })
                .collect()
        };
        let owed = self.acked.len() * subscribers;
        anyhow::ensure!(
            latencies.len() == owed,
            "matched {} of {owed} deliveries to their publish",
            latencies.len()
        );
        latencies.sort_by(f64::total_cmp);
        Ok(latencies)
    }
}

/// Where a latency is measured from.
#[derive(Debug, Clone, Copy)]
pub enum Since {
    /// The Publish call was sent.
    Sent,
    /// Its answer arrived.
    Acked,
}

/// The `q` quantile of non-empty `sorted` (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
