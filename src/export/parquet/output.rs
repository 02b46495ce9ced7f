//! Where a Parquet file's bytes go as the writer writes them: straight into the object's part
//! buffer, lent for the length of a call, until it holds a whole part; what comes after waits in
//! a spill that the next part begins with. So a part buffer never holds more than a part (no
//! room kept for a row group on top of it), and the bytes are copied once, whatever the size of
//! a column chunk or a row group. Where parts end never changes the bytes.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The writer's output (the writer owns one handle, the file another).
#[derive(Clone)]
pub(super) struct Output(Arc<Mutex<Inner>>);

struct Inner {
    /// The part being filled, while it is lent.
    part: Vec<u8>,
    lent: bool,
    /// `part` takes bytes until it holds this many.
    part_size: usize,
    /// Bytes written once the part was full (or while none was lent), in order.
    spill: Vec<u8>,
}

impl std::io::Write for Output {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let fits = if inner.lent && inner.spill.is_empty() {
            inner.room().min(bytes.len())
        } else {
            0
        };
        inner.part.extend_from_slice(&bytes[..fits]);
        inner.spill.extend_from_slice(&bytes[fits..]);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Output {
    pub(super) fn new(part_size: usize) -> Self {
        Self(Arc::new(Mutex::new(Inner {
            part: Vec::new(),
            lent: false,
            part_size,
            spill: Vec::new(),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Only the encoder's thread writes and lends: a poisoned lock still holds whole writes.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lends `out` to the writer for `write`: the spill goes into it first, then what `write`
    /// writes, until it holds a part. `out` comes back whatever `write` returns.
    pub(super) fn lend<T>(&self, out: &mut Vec<u8>, write: impl FnOnce() -> T) -> T {
        {
            let mut inner = self.lock();
            std::mem::swap(&mut inner.part, out);
            inner.lent = true;
            let n = inner.room().min(inner.spill.len());
            let Inner { part, spill, .. } = &mut *inner;
            part.extend_from_slice(&spill[..n]);
            spill.drain(..n);
        }
        let result = write();
        let mut inner = self.lock();
        std::mem::swap(&mut inner.part, out);
        inner.lent = false;
        result
    }

    /// Bytes written that wait for the next part.
    pub(super) fn spilled(&self) -> usize {
        self.lock().spill.len()
    }

    /// Appends every byte that waits to `out`, whatever its size: the file's last part.
    pub(super) fn drain_into(&self, out: &mut Vec<u8>) {
        let mut inner = self.lock();
        out.reserve_exact(inner.spill.len());
        out.extend_from_slice(&inner.spill);
        inner.spill = Vec::new();
    }
}

impl Inner {
    fn room(&self) -> usize {
        self.part_size.saturating_sub(self.part.len())
    }
}
