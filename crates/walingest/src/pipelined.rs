//! Ingesting a long stretch of WAL on two threads: a decoding thread reads
//! records off the decoder (CRC included), decodes them (block headers,
//! data, full-page images) and finds the visibility-map bits they clear,
//! while the calling thread encodes what ingest stores and applies the
//! records in WAL order. The split is where the two threads' work comes out
//! about even: with the VM clears found on the applying thread, it took 58%
//! of the CPU time to the decoding thread's 42% (ingest bench 2.0-2.1x
//! Postgres's replay; 2.2-2.3x since); with the stored forms encoded on the
//! decoding thread too, that one was the busier. This is for catching up (a
//! WAL receiver replaying its store after a restart, a bulk import, the
//! bench), where the rate matters; small reads of a streaming receiver are
//! ingested inline, where a hop to another thread would only
//! add latency.
//!
//! Records are handed over in runs (one piece of `PIECE_BYTES` of WAL), not
//! one by one: a hand-over per record costs as much as ingesting it (runs
//! of 64 records were slower than one thread), and each run ends in a write
//! of its records to the timeline. On the ingest bench, 256 KiB pieces
//! (some 2,000 records) took 15% less CPU per record than 64 KiB ones;
//! 1 MiB ones took more again.
//!
//! Spent runs go back to the decoding thread, which decodes the next
//! records into them where they lie: their block lists and data vectors
//! are reused, not freed by one thread and allocated by the other (a glibc
//! free of another thread's memory takes that arena's lock, against the
//! allocating thread), and the records are not moved (moving them between
//! vectors cost as much as decoding them).

use std::sync::{mpsc, Mutex};

use postgres_wal::{Lsn, WalError, WalStreamDecoder};
use storage::Timeline;

use crate::prepare::{decode_in_place, decode_only, PreparedRecord};
use crate::{IngestError, WalIngest};

/// Inputs shorter than this are ingested on the calling thread alone.
pub const PIPELINE_MIN_BYTES: usize = 256 * 1024;
/// WAL decoded per run handed over.
const PIECE_BYTES: usize = 256 * 1024;
/// Runs the decoding thread may be ahead of the applying one.
const RUNS_AHEAD: usize = 4;

/// Records [`WalIngest::ingest_bytes`] buffered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    pub records: u64,
    /// Bytes of those records in the WAL (page headers excluded).
    pub record_bytes: u64,
}

/// Why [`WalIngest::ingest_bytes`] stopped before the end of its input.
/// The records before the failure were ingested and written.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The WAL does not decode here (or ends, for a finite input:
    /// [`WalError::is_end_of_wal`]).
    #[error(transparent)]
    Decode(WalError),
    /// Ingesting the record at `lsn` (or writing the buffered records,
    /// with `lsn` the timeline's head) failed.
    #[error("ingesting the WAL at {lsn}: {source}")]
    Ingest {
        lsn: Lsn,
        #[source]
        source: IngestError,
    },
}

/// A run handed from the decoding thread to the applying one: the first
/// `len` of `records` (the rest are spare, kept to decode into later).
struct Run {
    records: Vec<PreparedRecord>,
    len: usize,
}

impl WalIngest {
    /// Feeds `bytes` to `decoder` and ingests every complete record it
    /// yields (first any it already held), in WAL order, counting them in
    /// `ingested`; the buffered records are written before it returns (and
    /// after each run when decoding on a second thread, which it does for
    /// inputs of [`PIPELINE_MIN_BYTES`] or more).
    pub fn ingest_bytes(
        &mut self,
        timeline: &Timeline,
        decoder: &mut WalStreamDecoder,
        bytes: &[u8],
        ingested: &mut Ingested,
    ) -> Result<(), FeedError> {
        let outcome = if bytes.len() < PIPELINE_MIN_BYTES {
            decoder.feed_bytes(bytes);
            self.ingest_inline(timeline, decoder, ingested)
        } else {
            self.ingest_pipelined(timeline, decoder, bytes, ingested)
        };
        // What was buffered before a failure is whole: keep it.
        let written = self.write_or_fail(timeline);
        outcome.and(written)
    }

    fn ingest_inline(
        &mut self,
        timeline: &Timeline,
        decoder: &mut WalStreamDecoder,
        ingested: &mut Ingested,
    ) -> Result<(), FeedError> {
        loop {
            match decoder.poll_raw() {
                Ok(Some(raw)) => {
                    let mut prepared = self.decode_spare(&raw);
                    let buffered = self.buffer_counted(timeline, &mut prepared, ingested);
                    self.spare = Some(prepared);
                    buffered?;
                }
                Ok(None) => return Ok(()),
                Err(error) => return Err(FeedError::Decode(error)),
            }
        }
    }

    fn ingest_pipelined(
        &mut self,
        timeline: &Timeline,
        decoder: &mut WalStreamDecoder,
        bytes: &[u8],
        ingested: &mut Ingested,
    ) -> Result<(), FeedError> {
        // The decoding thread takes the decoder from here; if that thread
        // cannot be started, this one does all the work with it.
        let handoff = Mutex::new(Some(decoder));
        let handoff = &handoff;
        std::thread::scope(|scope| {
            let (run_sender, runs) = mpsc::sync_channel::<Result<Run, WalError>>(RUNS_AHEAD);
            let (spent_sender, spent) = mpsc::channel::<Vec<PreparedRecord>>();
            let decoding = std::thread::Builder::new()
                .name("wal-decode".to_owned())
                .spawn_scoped(scope, move || {
                    if let Some(decoder) = take(handoff) {
                        decode_runs(decoder, bytes, run_sender, &spent);
                    }
                });
            let Ok(decoding) = decoding else {
                let Some(decoder) = take(handoff) else {
                    return Ok(());
                };
                decoder.feed_bytes(bytes);
                return self.ingest_inline(timeline, decoder, ingested);
            };
            let mut outcome = Ok(());
            for run in runs.iter() {
                let mut run = match run {
                    Ok(run) => run,
                    Err(error) => {
                        outcome = Err(FeedError::Decode(error));
                        break;
                    }
                };
                let applied = run
                    .records
                    .iter_mut()
                    .take(run.len)
                    .try_for_each(|prepared| self.buffer_counted(timeline, prepared, ingested))
                    .and_then(|()| self.write_or_fail(timeline));
                // Decoded into again (or freed) by the thread that
                // allocated it; if that thread is gone, freed here.
                let _ = spent_sender.send(std::mem::take(&mut run.records));
                if let Err(error) = applied {
                    outcome = Err(error);
                    break;
                }
            }
            // Stops the decoding thread at its next hand-over.
            drop(runs);
            drop(spent_sender);
            // A panic there is one inline decoding would have had here.
            if let Err(panic) = decoding.join() {
                std::panic::resume_unwind(panic);
            }
            outcome
        })
    }

    fn buffer_counted(
        &mut self,
        timeline: &Timeline,
        prepared: &mut PreparedRecord,
        ingested: &mut Ingested,
    ) -> Result<(), FeedError> {
        let (lsn, len) = (prepared.start_lsn(), prepared.len() as u64);
        self.buffer_prepared_in_place(timeline, prepared)
            .map_err(|source| FeedError::Ingest { lsn, source })?;
        ingested.records += 1;
        ingested.record_bytes += len;
        Ok(())
    }

    fn write_or_fail(&mut self, timeline: &Timeline) -> Result<(), FeedError> {
        self.write_buffered(timeline)
            .map_err(|source| FeedError::Ingest {
                lsn: timeline.last_record_lsn(),
                source,
            })
    }
}

fn take<'a>(handoff: &Mutex<Option<&'a mut WalStreamDecoder>>) -> Option<&'a mut WalStreamDecoder> {
    handoff
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}

/// The decoding thread: the records `decoder` holds, then those of `bytes`
/// piece by piece, one run per piece. Ends at the end of `bytes`, at a
/// decoding error (sent on), or when the applying side hangs up.
fn decode_runs(
    decoder: &mut WalStreamDecoder,
    bytes: &[u8],
    runs: mpsc::SyncSender<Result<Run, WalError>>,
    spent: &mpsc::Receiver<Vec<PreparedRecord>>,
) {
    let mut pieces = bytes.chunks(PIECE_BYTES);
    loop {
        // A spent run if one is back (at most RUNS_AHEAD + 2 ever exist).
        let mut records = spent.try_recv().unwrap_or_default();
        let mut len = 0;
        let failure = loop {
            match decoder.poll_raw() {
                Ok(Some(raw)) => {
                    match records.get_mut(len) {
                        Some(slot) => decode_in_place(&raw, slot),
                        None => records.push(decode_only(&raw)),
                    }
                    len += 1;
                }
                Ok(None) => break None,
                Err(error) => break Some(error),
            }
        };
        if len > 0 && runs.send(Ok(Run { records, len })).is_err() {
            return;
        }
        if let Some(error) = failure {
            let _ = runs.send(Err(error));
            return;
        }
        match pieces.next() {
            Some(piece) => decoder.feed_bytes(piece),
            None => break,
        }
    }
    // The runs still being applied come back spent: freed here (where they
    // were allocated) while the applying thread works on, not by it after.
    // Hanging up first ends the applying thread's loop after the last run.
    drop(runs);
    for spent in spent.iter() {
        drop(spent);
    }
}
