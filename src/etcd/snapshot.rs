//! Streaming a snapshot from one member with etcd's own accounting: every data message carries
//! the bytes still to come, the database is followed by one message holding its raw SHA-256, and
//! the stream then ends. [`StreamAccount`] checks all of that (pure); [`stream_snapshot`] drives
//! the gRPC stream with overall and stall timeouts and hands every byte to a channel.

use bytes::Bytes;
use etcd_client::Client;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// etcd's SHA-256 trailer length, in bytes.
const TRAILER_LEN: usize = crate::etcddb::TRAILER_LEN as usize;

/// A snapshot stream that did not add up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamFault {
    /// Protocol accounting broke (sizes, empty chunks, extra bytes).
    Protocol(String),
    /// All bytes arrived but their SHA-256 is not the trailer's.
    Mismatch {
        /// SHA-256 of what we received, hex.
        computed: String,
        /// SHA-256 the member sent, hex.
        trailer: String,
    },
}

impl std::fmt::Display for StreamFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamFault::Protocol(m) => f.write_str(m),
            StreamFault::Mismatch { computed, trailer } => write!(
                f,
                "SHA-256 of the received database is {computed} but the member's trailer says \
                 {trailer}: the snapshot was corrupted in transit or by the member"
            ),
        }
    }
}

/// Running accounting of one snapshot stream.
#[derive(Debug, Clone)]
pub struct StreamAccount {
    total: Option<u64>,
    seen: u64,
    hasher: Sha256,
    trailer: Vec<u8>,
}

/// A stream that added up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Size of the database image (without trailer).
    pub db_size: u64,
    /// Its SHA-256 (equal to the trailer).
    pub sha256: [u8; 32],
}

impl Default for StreamAccount {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamAccount {
    /// Start accounting for a new stream.
    pub fn new() -> Self {
        Self {
            total: None,
            seen: 0,
            hasher: Sha256::new(),
            trailer: Vec::with_capacity(TRAILER_LEN),
        }
    }

    /// Bytes of the database received so far.
    pub fn received(&self) -> u64 {
        self.seen
    }

    /// Database size announced by the first message.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// Account for one message.
    pub fn accept(&mut self, remaining: u64, blob: &[u8]) -> Result<(), StreamFault> {
        let total = *self
            .total
            .get_or_insert_with(|| remaining.saturating_add(blob.len() as u64));
        if self.seen < total {
            if blob.is_empty() {
                // etcd loops on empty messages when its bbolt writer fails (etcd-io/etcd#22125).
                return Err(StreamFault::Protocol(format!(
                    "member sent an empty chunk with {} bytes outstanding (a known etcd server \
                     bug when it cannot read its own database); check the member's logs and disk",
                    total - self.seen
                )));
            }
            let data = (blob.len() as u64).min(total - self.seen) as usize;
            let expect_remaining = total - self.seen - data as u64;
            if data == blob.len() && remaining != expect_remaining {
                return Err(StreamFault::Protocol(format!(
                    "member said {remaining} bytes remain after byte {}, expected \
                     {expect_remaining}",
                    self.seen + data as u64
                )));
            }
            self.hasher.update(&blob[..data]);
            self.seen += data as u64;
            self.take_trailer(&blob[data..])
        } else {
            if remaining != 0 {
                return Err(StreamFault::Protocol(format!(
                    "member announced {remaining} more bytes after the whole {total}-byte \
                     database"
                )));
            }
            self.take_trailer(blob)
        }
    }

    fn take_trailer(&mut self, bytes: &[u8]) -> Result<(), StreamFault> {
        if self.trailer.len() + bytes.len() > TRAILER_LEN {
            return Err(StreamFault::Protocol(format!(
                "member sent {} bytes after the database; expected exactly the {TRAILER_LEN}-byte \
                 SHA-256 trailer",
                self.trailer.len() + bytes.len()
            )));
        }
        self.trailer.extend_from_slice(bytes);
        Ok(())
    }

    /// The stream ended cleanly: check it was complete and the trailer matches.
    pub fn finish(self) -> Result<Verified, StreamFault> {
        let total = self.total.unwrap_or(0);
        if self.total.is_none() {
            return Err(StreamFault::Protocol("member sent no data at all".into()));
        }
        if self.seen < total {
            return Err(StreamFault::Protocol(format!(
                "stream ended after {} of {total} database bytes",
                self.seen
            )));
        }
        if self.trailer.len() != TRAILER_LEN {
            return Err(StreamFault::Protocol(format!(
                "stream ended without the {TRAILER_LEN}-byte SHA-256 trailer (got {} bytes)",
                self.trailer.len()
            )));
        }
        let computed: [u8; 32] = self.hasher.finalize().into();
        if computed[..] != self.trailer[..] {
            return Err(StreamFault::Mismatch {
                computed: hex::encode(computed),
                trailer: hex::encode(&self.trailer),
            });
        }
        Ok(Verified {
            db_size: total,
            sha256: computed,
        })
    }
}

/// Why streaming from a member failed.
#[derive(Debug)]
pub enum StreamError {
    /// The member or network failed (gRPC error, stall, timeout). Another member may work.
    Member(String),
    /// The bytes did not add up. Another member may work.
    Fault(StreamFault),
    /// Our consumer went away (a downstream stage failed and will report why).
    SinkClosed,
}

/// Limits for one stream.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Whole snapshot must finish within this.
    pub timeout: Duration,
    /// Abort when no message arrives for this long.
    pub stall: Duration,
}

/// Stream a snapshot from `client`, sending every received byte (database and trailer, exactly
/// as etcdctl would write the file) to `sink`. Returns once the trailer is verified.
pub async fn stream_snapshot(
    client: &mut Client,
    limits: Limits,
    sink: &mpsc::Sender<Bytes>,
    on_progress: &(dyn Fn(u64, Option<u64>) + Sync),
) -> Result<Verified, StreamError> {
    let deadline = Instant::now() + limits.timeout;
    let mut account = StreamAccount::new();
    let mut stream = with_limits(deadline, limits, &account, client.snapshot())
        .await?
        .map_err(|e| StreamError::Member(super::describe_etcd_error(&e)))?;
    loop {
        let msg = with_limits(deadline, limits, &account, stream.message())
            .await?
            .map_err(|e| {
                StreamError::Member(format!(
                    "stream failed after {} bytes: {}",
                    account.received(),
                    super::describe_etcd_error(&e)
                ))
            })?;
        let Some(msg) = msg else { break };
        account
            .accept(msg.remaining_bytes(), msg.blob())
            .map_err(StreamError::Fault)?;
        on_progress(account.received(), account.total());
        if !msg.blob().is_empty() {
            sink.send(Bytes::copy_from_slice(msg.blob()))
                .await
                .map_err(|_| StreamError::SinkClosed)?;
        }
    }
    account.finish().map_err(StreamError::Fault)
}

async fn with_limits<T>(
    deadline: Instant,
    limits: Limits,
    account: &StreamAccount,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, StreamError> {
    let now = Instant::now();
    let overall_left = deadline.saturating_duration_since(now);
    let wait = overall_left.min(limits.stall);
    match tokio::time::timeout(wait, fut).await {
        Ok(v) => Ok(v),
        Err(_) if wait < limits.stall => Err(StreamError::Member(format!(
            "snapshot did not finish within snapshot.timeout {} ({} of {} bytes received); raise \
             the timeout if the database is large or the destinations are slow",
            humantime::format_duration(limits.timeout),
            account.received(),
            account.total().map_or("?".into(), |t| t.to_string()),
        ))),
        Err(_) => Err(StreamError::Member(format!(
            "stalled: no data for snapshot.stallTimeout {} after {} bytes",
            humantime::format_duration(limits.stall),
            account.received()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages exactly as etcd's server sends them for `db`.
    fn messages(db: &[u8], chunk: usize) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut sent = 0;
        for c in db.chunks(chunk) {
            sent += c.len();
            out.push(((db.len() - sent) as u64, c.to_vec()));
        }
        out.push((0, Sha256::digest(db).to_vec()));
        out
    }

    fn run(msgs: &[(u64, Vec<u8>)]) -> Result<Verified, StreamFault> {
        let mut a = StreamAccount::new();
        for (r, b) in msgs {
            a.accept(*r, b)?;
        }
        a.finish()
    }

    #[test]
    fn a_well_formed_stream_verifies() {
        let db: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let v = run(&messages(&db, 32768)).unwrap();
        assert_eq!(v.db_size, 100_000);
        assert_eq!(v.sha256[..], Sha256::digest(&db)[..]);
    }

    #[test]
    fn trailer_glued_to_the_last_chunk_is_accepted() {
        let db = vec![5u8; 1000];
        let mut msgs = messages(&db, 600);
        let trailer = msgs.pop().unwrap().1;
        msgs.last_mut().unwrap().1.extend_from_slice(&trailer);
        assert!(run(&msgs).is_ok());
    }

    #[test]
    fn corruption_truncation_and_bad_accounting_are_refused() {
        let db = vec![9u8; 70_000];
        let good = messages(&db, 32768);

        let mut flipped = good.clone();
        flipped[1].1[10] ^= 1;
        assert!(matches!(run(&flipped), Err(StreamFault::Mismatch { .. })));

        let no_trailer = &good[..good.len() - 1];
        let e = run(no_trailer).unwrap_err();
        assert!(e.to_string().contains("without the 32-byte"), "{e}");

        let truncated = &good[..1];
        let e = run(truncated).unwrap_err();
        assert!(e.to_string().contains("32768 of 70000"), "{e}");

        let mut wrong_remaining = good.clone();
        wrong_remaining[1].0 += 1;
        assert!(matches!(
            run(&wrong_remaining),
            Err(StreamFault::Protocol(_))
        ));

        let mut empty = good.clone();
        empty.insert(1, (good[0].0, vec![]));
        let e = run(&empty).unwrap_err();
        assert!(e.to_string().contains("empty chunk"), "{e}");

        let mut extra = good.clone();
        extra.push((0, vec![1]));
        let e = run(&extra).unwrap_err();
        assert!(e.to_string().contains("33 bytes after"), "{e}");

        assert!(run(&[]).is_err());
    }
}
