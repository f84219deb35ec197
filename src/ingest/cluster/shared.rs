//! What each instance tells the others (its screens, how far its screens' epochs got): one
//! document per instance in a JetStream key-value bucket whose entries expire a few seconds
//! after their instance's last word.
//!
//! A document of ten thousand screens is several megabytes of JSON, more than one NATS
//! message may carry: it is compressed (LZ4) and, if still too large, split over several keys
//! (`<instance>`, `<instance>.1`, …), each chunk saying which write it belongs to, so that a
//! reader never joins chunks of two different writes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use async_nats::jetstream::kv;
use futures_util::StreamExt;

/// Each chunk starts with the write it belongs to (u64), its index and the chunk count (u16
/// each), little-endian.
const HEADER: usize = 12;

pub struct SharedBoard {
    store: kv::Store,
    instance: String,
    /// Bytes of one value at most (the server's largest message, less room for headers).
    max_value: usize,
    writes: AtomicU64,
    /// Chunks the last write used: later writes with fewer delete the rest.
    chunks: AtomicUsize,
}

impl SharedBoard {
    pub fn new(store: kv::Store, instance: String, max_value: usize) -> Self {
        SharedBoard {
            store,
            instance,
            max_value: max_value.max(HEADER + 1024),
            // Distinct from the writes of an earlier process under a reused name.
            writes: AtomicU64::new(rand::random::<u32>() as u64),
            chunks: AtomicUsize::new(1),
        }
    }

    /// Replaces this instance's document.
    pub async fn put(&self, document: &[u8]) -> anyhow::Result<()> {
        let packed = lz4_flex::compress_prepend_size(document);
        let room = self.max_value - HEADER;
        let count = packed.len().div_ceil(room).max(1);
        if count > u16::MAX as usize {
            anyhow::bail!("a shared document of {} bytes is too large", document.len());
        }
        let write = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
        // The later chunks first: a reader that finds chunk 0 of this write finds the rest.
        for index in (0..count).rev() {
            let part = &packed[index * room..((index + 1) * room).min(packed.len())];
            let mut value = Vec::with_capacity(HEADER + part.len());
            value.extend_from_slice(&write.to_le_bytes());
            value.extend_from_slice(&(index as u16).to_le_bytes());
            value.extend_from_slice(&(count as u16).to_le_bytes());
            value.extend_from_slice(part);
            self.store
                .put(chunk_key(&self.instance, index), value.into())
                .await
                .map_err(|e| anyhow::anyhow!("sharing with the other instances: {e}"))?;
        }
        let before = self.chunks.swap(count, Ordering::Relaxed);
        for index in count..before {
            let _ = self.store.delete(chunk_key(&self.instance, index)).await;
        }
        Ok(())
    }

    /// Every live instance's last document, by instance (one being rewritten at this moment
    /// may be left out).
    pub async fn all(&self) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let keys: Vec<String> = self
            .store
            .keys()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .filter_map(|k| async move { k.ok() })
            .collect()
            .await;
        let mut out = Vec::new();
        for instance in keys.iter().filter(|k| !k.contains('.')) {
            match self.read(instance).await {
                Ok(Some(document)) => out.push((instance.clone(), document)),
                Ok(None) => {}
                Err(e) => tracing::debug!(%instance, error = %e, "skipped a shared document"),
            }
        }
        Ok(out)
    }

    async fn read(&self, instance: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(first) = self.get(instance, 0).await? else {
            return Ok(None);
        };
        let (write, _, count) = header(&first)?;
        let mut packed = first[HEADER..].to_vec();
        for index in 1..count {
            let chunk = self
                .get(instance, index)
                .await?
                .ok_or_else(|| anyhow::anyhow!("chunk {index} is missing"))?;
            let (w, i, c) = header(&chunk)?;
            if (w, i, c) != (write, index, count) {
                anyhow::bail!("chunk {index} belongs to another write");
            }
            packed.extend_from_slice(&chunk[HEADER..]);
        }
        Ok(Some(lz4_flex::decompress_size_prepended(&packed)?))
    }

    async fn get(&self, instance: &str, index: usize) -> anyhow::Result<Option<bytes::Bytes>> {
        self.store
            .get(chunk_key(instance, index))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

fn chunk_key(instance: &str, index: usize) -> String {
    if index == 0 {
        instance.to_string()
    } else {
        format!("{instance}.{index}")
    }
}

fn header(value: &[u8]) -> anyhow::Result<(u64, usize, usize)> {
    if value.len() < HEADER {
        anyhow::bail!("a chunk of {} bytes has no header", value.len());
    }
    let write = u64::from_le_bytes(value[0..8].try_into()?);
    let index = u16::from_le_bytes(value[8..10].try_into()?);
    let count = u16::from_le_bytes(value[10..12].try_into()?);
    Ok((write, index as usize, count as usize))
}
