//! Provider spans that lost their parent.
//!
//! Some framework instrumentations never make their LLM span the *current*
//! span (OpenInference's LangChain tracer works from callbacks; LlamaIndex's
//! streaming spans end before the stream is read). A provider
//! instrumentation running underneath (OpenInference's OpenAI instrumentor,
//! the Anthropic SDK's own tracing) then starts a new trace for the same
//! call: the call is described twice, once as the framework's LLM span in the
//! app's trace and once as a parentless LLM span in a trace of its own, and
//! would be counted as two calls and an extra request.
//!
//! The rule: a parentless LLM or embedding span from a service that nests LLM
//! spans, which *started during* a framework LLM span of the same service and
//! the same model, is that span's provider call. It is re-attached beneath it
//! (its trace and parent become the framework span's), and the nested-call
//! rule (`calls`) then makes the two one call. When the framework span's
//! trace was already released (the exporter split the two into different
//! batches), the call was counted from the framework span, and the provider
//! span becomes an unbilled step of that chain. Each framework span takes at
//! most one such span (the latest to start inside it). A parentless span
//! that finds no framework span within the assembly timeout is released as
//! what it looks like: a request of its own.
//!
//! Only services seen sending nested framework steps (a span with a parent
//! and a known kind: prompt, chain, LLM, …) are waited for, so an app that
//! calls a provider SDK directly — where a parentless LLM span really is the
//! request, with at most HTTP client spans beneath it — is never delayed. A
//! framework app whose very first export holds the provider span and nothing
//! else of the app cannot be matched (the service is not yet known as a
//! framework app): that call counts twice. Memory: at most `assembly.max_spans` held spans in all
//! (orphans count towards it) and [`MAX_FRAMEWORK_SPANS`] remembered
//! framework spans.

use crate::normalize::{ChainRun, SpanId, Text, TraceId};
use foldhash::fast::RandomState;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// Framework LLM spans remembered for matching (newest kept).
pub const MAX_FRAMEWORK_SPANS: usize = 4096;
/// Services remembered as nesting LLM spans.
const MAX_NESTING_SERVICES: usize = 1024;

/// A framework LLM span an orphan may belong to.
#[derive(Clone)]
pub struct Frame {
    pub service: Arc<str>,
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub start: u64,
    pub end: u64,
    pub model: Option<Text>,
    /// The framework span carried a time to first token.
    pub has_ttft: bool,
}

impl Frame {
    pub fn of(run: &ChainRun) -> Frame {
        Frame {
            service: run.service.clone(),
            trace_id: run.trace_id,
            span_id: run.span_id,
            start: run.start_unix_nano,
            end: run.end_unix_nano,
            model: run.model.clone(),
            has_ttft: run.time_to_first_token_s.is_some(),
        }
    }

    /// Whether `orphan` is this span's provider call.
    fn holds(&self, orphan: &ChainRun) -> bool {
        let same_model = match (&self.model, &orphan.model) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.trace_id != orphan.trace_id
            && *self.service == *orphan.service
            && same_model
            && orphan.start_unix_nano >= self.start
            && orphan.start_unix_nano <= self.end
    }
}

#[derive(Default)]
pub struct Orphans {
    held: VecDeque<(ChainRun, Instant)>,
    frames: VecDeque<Frame>,
    nesting: HashSet<Arc<str>, RandomState>,
}

impl Orphans {
    /// A parentless LLM span of this service may be an orphan.
    pub fn may_nest(&self, service: &str) -> bool {
        self.nesting.contains(service)
    }

    /// Notes a nested (framework) LLM span: its service nests, and the span
    /// can take an orphan that arrives later.
    pub fn note_frame(&mut self, frame: Frame) {
        if !self.nesting.contains(&*frame.service) {
            self.note_nesting(&frame.service);
        }
        if self.frames.len() == MAX_FRAMEWORK_SPANS {
            self.frames.pop_front();
        }
        self.frames.push_back(frame);
    }

    /// Notes that a service nests LLM spans (before its spans are placed, so
    /// an orphan earlier in the same request is held, not released).
    pub fn note_nesting(&mut self, service: &Arc<str>) {
        if self.nesting.len() < MAX_NESTING_SERVICES {
            self.nesting.insert(service.clone());
        }
    }

    /// The remembered framework span `orphan` belongs to, among those for
    /// which `usable` holds (their trace can still take a run); the latest
    /// to start wins. The frame is consumed.
    pub fn take_frame(
        &mut self,
        orphan: &ChainRun,
        usable: impl Fn(&Frame) -> bool,
    ) -> Option<Frame> {
        let i = self
            .frames
            .iter()
            .enumerate()
            .filter(|(_, f)| f.holds(orphan) && usable(f))
            .max_by_key(|(_, f)| f.start)
            .map(|(i, _)| i)?;
        self.frames.remove(i)
    }

    pub fn hold(&mut self, run: ChainRun, now: Instant) {
        self.held.push_back((run, now));
    }

    /// The held orphan that `frame` takes, if any (the latest to start).
    pub fn claim(&mut self, frame: &Frame) -> Option<ChainRun> {
        let i = self
            .held
            .iter()
            .enumerate()
            .filter(|(_, (r, _))| frame.holds(r))
            .max_by_key(|(_, (r, _))| r.start_unix_nano)
            .map(|(i, _)| i)?;
        // The frame is used up: forget it so no later orphan matches it.
        self.frames
            .retain(|f| !(f.trace_id == frame.trace_id && f.span_id == frame.span_id));
        self.held.remove(i).map(|(r, _)| r)
    }

    /// Orphans held since before `deadline` (oldest first), released as
    /// requests of their own.
    pub fn expire(&mut self, deadline: impl Fn(Instant) -> bool) -> Vec<ChainRun> {
        let mut out = Vec::new();
        while let Some((_, since)) = self.held.front() {
            if !deadline(*since) {
                break;
            }
            if let Some((r, _)) = self.held.pop_front() {
                out.push(r);
            }
        }
        out
    }

    /// The oldest held orphan (capacity eviction).
    pub fn pop_oldest(&mut self) -> Option<ChainRun> {
        self.held.pop_front().map(|(r, _)| r)
    }
}

/// Makes `orphan` a child of `frame` in `frame`'s trace.
pub fn adopt(mut orphan: ChainRun, frame: &Frame) -> ChainRun {
    orphan.trace_id = frame.trace_id;
    orphan.parent_span_id = Some(frame.span_id);
    orphan
}

#[cfg(test)]
mod tests {
    use super::super::assembly::{Assembler, Labeled};
    use crate::config::AssemblyConfig;
    use crate::normalize::{ChainRun, RunKind, Text};
    use std::time::{Duration, Instant};

    fn span(
        trace: u8,
        id: u8,
        parent: Option<u8>,
        kind: RunKind,
        start: u64,
        end: u64,
    ) -> ChainRun {
        let mut r = ChainRun::for_test(trace, id, parent, kind);
        r.start_unix_nano = start;
        r.end_unix_nano = end;
        r.model = (kind == RunKind::Llm).then(|| Text::from("gpt-4o-mini"));
        r
    }

    fn feed(a: &mut Assembler, runs: Vec<ChainRun>, now: Instant) -> Vec<Labeled> {
        let mut out = Vec::new();
        a.note_nesting(&runs);
        for r in runs {
            a.accept(r, now, &mut out);
        }
        out
    }

    #[test]
    fn a_detached_provider_span_joins_its_framework_call() {
        let mut a = Assembler::new(&AssemblyConfig::default());
        let now = Instant::now();
        // One export: the SDK's span (its own trace 2, ended first), the
        // framework LLM span and the chain root (trace 1).
        let out = feed(
            &mut a,
            vec![
                span(2, 9, None, RunKind::Llm, 15, 40),
                span(1, 2, Some(1), RunKind::Llm, 10, 50),
                span(1, 1, None, RunKind::Chain, 0, 60),
            ],
            now,
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out.iter().filter(|l| l.is_request).count(), 1);
        let adopted = out
            .iter()
            .find(|l| l.run.span_id == [9; 8])
            .expect("adopted");
        assert_eq!(adopted.run.trace_id, [1; 16]);
        assert_eq!(adopted.run.parent_span_id, Some([2; 8]));
        assert_eq!(&*adopted.chain, "run1");
        assert_eq!(a.stats.orphans_adopted, 1);
        assert_eq!(a.spans_held(), 0);
    }

    #[test]
    fn across_exports_and_only_for_services_that_nest() {
        let mut a = Assembler::new(&AssemblyConfig::default());
        let now = Instant::now();
        // A direct SDK app (no nested LLM spans yet): its parentless LLM span
        // is a request, released at once.
        let out = feed(&mut a, vec![span(5, 5, None, RunKind::Llm, 0, 5)], now);
        assert_eq!(out.len(), 1);
        assert!(out[0].is_request);
        // The service nests from now on; a detached span in one export...
        let out = feed(&mut a, vec![span(1, 2, Some(1), RunKind::Llm, 10, 50)], now);
        assert!(out.is_empty());
        let out = feed(&mut a, vec![span(3, 9, None, RunKind::Llm, 20, 45)], now);
        assert!(out.is_empty(), "adopted into the pending trace");
        let out = feed(&mut a, vec![span(1, 1, None, RunKind::Chain, 0, 60)], now);
        assert_eq!(out.len(), 3);
        // ...and one that matches nothing is a request after the timeout.
        let out = feed(&mut a, vec![span(4, 4, None, RunKind::Llm, 100, 120)], now);
        assert!(out.is_empty());
        let mut out = Vec::new();
        a.sweep(now + Duration::from_secs(11), &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].is_request);
        assert_eq!(a.spans_held(), 0);
    }
}
