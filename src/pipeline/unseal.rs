//! The reverse of [`super::seal`]: stored chunks in, age decryption and zstd decompression, the
//! plaintext snapshot out to a file, with the SHA-256 of the database image and the trailer.

use bytes::{Buf, Bytes};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use tokio::sync::mpsc;

/// A blocking reader over a channel of chunks.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

/// What came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsealOutput {
    /// Plaintext bytes written.
    pub plain_size: u64,
    /// SHA-256 of the first `image_len` bytes (the database image).
    pub image_sha256: [u8; 32],
    /// Bytes after the image (etcd's trailer, when there is one), at most 64 kept.
    pub tail: Vec<u8>,
}

/// Why unsealing failed.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    /// No identity could decrypt the file, or it is not an age file.
    #[error("decrypting: {0}")]
    Decrypt(String),
    /// The data is damaged (age authentication, zstd checksum or framing).
    #[error("the stored data is damaged: {0}")]
    Damaged(String),
    /// Writing the output failed.
    #[error("writing the output: {0}")]
    Write(io::Error),
}

/// Read stored chunks from `input` until it closes, decrypt with `identities` (none: the data
/// is not encrypted), decompress, and write to `out`. Blocking: call from `spawn_blocking`.
pub fn unseal(
    input: mpsc::Receiver<Bytes>,
    identities: &[Box<dyn age::Identity + Send + Sync>],
    image_len: u64,
    out: &mut impl Write,
) -> Result<UnsealOutput, UnsealError> {
    let reader = ChannelReader {
        rx: input,
        cur: Bytes::new(),
    };
    let compressed: Box<dyn Read> = if identities.is_empty() {
        Box::new(reader)
    } else {
        let d = age::Decryptor::new(reader).map_err(|e| UnsealError::Decrypt(e.to_string()))?;
        let r = d
            .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| UnsealError::Decrypt(e.to_string()))?;
        Box::new(r)
    };
    let mut plain = zstd::stream::read::Decoder::new(compressed)
        .map_err(|e| UnsealError::Damaged(format!("zstd: {e}")))?;
    let mut h = Sha256::new();
    let mut tail = Vec::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match plain.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(UnsealError::Damaged(e.to_string())),
        };
        let chunk = &buf[..n];
        let in_image = (image_len.saturating_sub(size)).min(n as u64) as usize;
        h.update(&chunk[..in_image]);
        let rest = &chunk[in_image..];
        let room = 64usize.saturating_sub(tail.len());
        tail.extend_from_slice(&rest[..rest.len().min(room)]);
        out.write_all(chunk).map_err(UnsealError::Write)?;
        size += n as u64;
    }
    Ok(UnsealOutput {
        plain_size: size,
        image_sha256: h.finalize().into(),
        tail,
    })
}
