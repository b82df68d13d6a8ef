//! One memory budget for every request in flight (`limits.max_inflight_bytes`).
//!
//! Bytes are reserved *before* they are kept: HTTP bodies and gRPC messages
//! as their frames arrive (`body::BodyBuffer`; never what a client merely
//! announced, so a slow upload holds what it sent), inflated bytes as
//! inflation produces them. A reservation lives until the response is sent. When a
//! reservation does not fit, the request is refused with the status OTLP
//! exporters retry (503 + `Retry-After` / `RESOURCE_EXHAUSTED` + RetryInfo),
//! counted as `reason="memory_limit"`, and `/readyz` fails while the budget
//! has no room for one more request of `limits.max_request_bytes`.

use super::IngestError;
use metrics::Gauge;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct MemoryBudget {
    used: AtomicUsize,
    max: usize,
    /// `limits.max_request_bytes`: readiness needs room for one more
    /// request of the largest size.
    headroom: usize,
    gauge: Gauge,
}

impl MemoryBudget {
    /// `used` reports the bytes in flight (the pipeline registers it as
    /// `chainpulse_inflight_bytes`; receive/ knows no metric registry).
    pub fn new(used: Gauge, max: usize, headroom: usize) -> Arc<Self> {
        Arc::new(MemoryBudget {
            used: AtomicUsize::new(0),
            max,
            headroom,
            gauge: used,
        })
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// No room left for a request of the largest size (`/readyz` fails).
    pub fn nearly_full(&self) -> bool {
        self.used().saturating_add(self.headroom) > self.max
    }

    /// An empty reservation, grown as bytes are about to be buffered.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: self.clone(),
            held: 0,
        }
    }

    fn take(&self, n: usize) -> Result<(), IngestError> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(n);
            if next > self.max {
                return Err(IngestError::MemoryLimit {
                    wanted: n,
                    used,
                    limit: self.max,
                });
            }
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.gauge.set(next as f64);
                    return Ok(());
                }
                Err(actual) => used = actual,
            }
        }
    }

    fn give(&self, n: usize) {
        let left = self.used.fetch_sub(n, Ordering::AcqRel) - n;
        self.gauge.set(left as f64);
    }
}

/// Bytes held against the budget, released on drop.
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    held: usize,
}

impl Reservation {
    /// Reserves `n` more bytes, or refuses (nothing taken).
    pub fn grow(&mut self, n: usize) -> Result<(), IngestError> {
        self.budget.take(n)?;
        self.held += n;
        Ok(())
    }

    /// Gives back `n` bytes (buffers freed early).
    pub fn shrink(&mut self, n: usize) {
        let n = n.min(self.held);
        self.budget.give(n);
        self.held -= n;
    }

    pub fn held(&self) -> usize {
        self.held
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held > 0 {
            self.budget.give(self.held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_up_to_the_limit_and_releases_on_drop() {
        let b = MemoryBudget::new(Gauge::noop(), 100, 10);
        let mut a = b.reservation();
        a.grow(60).expect("fits");
        let mut c = b.reservation();
        assert_eq!(c.grow(50).unwrap_err().reason(), "memory_limit");
        c.grow(40).expect("fits");
        assert_eq!(b.used(), 100);
        drop(a);
        assert_eq!(b.used(), 40);
        c.shrink(15);
        drop(c);
        assert_eq!(b.used(), 0);
    }
}
