//! Screens across instances on one record stream: every few seconds each instance tells the
//! others which screens it serves and how far each screen's epoch got, so that
//! `/api/v1/screens` on any of them lists all, and a screen that reconnects to another resumes
//! there. The transport is the cluster's shared board (`ingest::cluster::shared`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::resume::Anchor;
use super::Streams;
use crate::ingest::cluster::Broker;
use crate::live::Position;
use crate::wire::stream::{InstanceShare, Screen};

/// Runs for good; `local` lists the screens this instance serves.
pub async fn share_screens(
    streams: Arc<Streams>,
    broker: &Broker,
    local: impl Fn() -> Vec<Screen>,
) {
    let mine = || {
        serde_json::to_vec(&InstanceShare {
            screens: local(),
            epochs: streams
                .resumes
                .anchors()
                .into_iter()
                .map(|(epoch, a)| (epoch, a.seq, a.seen.upto, a.seen.when))
                .collect(),
        })
    };
    let theirs = |all: Vec<(String, Vec<u8>)>| {
        let mut anchors = HashMap::new();
        for (_, document) in all {
            let Ok(share) = serde_json::from_slice::<InstanceShare>(&document) else {
                continue;
            };
            for (epoch, seq, upto, when) in share.epochs {
                let seen = Position { upto, when };
                anchors.insert(epoch, Anchor { seq, seen });
            }
        }
        streams.anchors.replace(anchors);
    };
    broker
        .exchange_every(Duration::from_secs(5), mine, theirs)
        .await;
}
