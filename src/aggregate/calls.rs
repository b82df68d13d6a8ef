//! One provider call is one LLM call, however many spans describe it.
//!
//! The same call often arrives as several nested LLM spans: a framework's
//! span around the provider SDK's (LlamaIndex's `OpenAI.predict` →
//! `OpenAI.chat`; LangChain's `ChatOpenAI` → `openai.chat` whenever a
//! framework instrumentor and a provider instrumentor are both on). Counting
//! each would count the call — and its tokens and cost — twice.
//!
//! The rule, applied to each released batch (normally a whole trace, since a
//! root is the last span of its trace to end): an LLM or embedding run with
//! an LLM or embedding run *beneath* it is a wrapper. Wrappers are kept as
//! steps (their latency is real) but are not calls: no call count, no
//! tokens, no cost, and their failure is not a second LLM error (the call
//! beneath already failed with it). The innermost runs are the calls. A call that reported
//! no usage, or no model, or no time to first token, takes it from the
//! nearest wrapper that did, when that wrapper holds no other call (so a
//! framework that reports usage only on its own span still prices the call,
//! and a wrapper's figures are never split between two calls).

use super::assembly::Labeled;
use crate::normalize::{SpanId, TraceId};
use foldhash::fast::RandomState;
use std::collections::HashMap;

/// Marks wrappers unbilled and completes the calls beneath them.
pub fn resolve(batch: &mut [Labeled]) {
    let billable = |l: &Labeled| l.run.kind.bills_tokens();
    let nested = batch.iter().filter(|l| billable(l)).count();
    if nested < 2 {
        return;
    }
    let all: HashMap<(TraceId, SpanId), usize, RandomState> = batch
        .iter()
        .enumerate()
        .map(|(i, l)| ((l.run.trace_id, l.run.span_id), i))
        .collect();

    // The nearest billable ancestor of each billable run, in the same trace.
    // The walk is bounded by the batch size, so a parent cycle ends it.
    let mut wrapper_of: Vec<Option<usize>> = vec![None; batch.len()];
    for (i, l) in batch.iter().enumerate().filter(|(_, l)| billable(l)) {
        let mut parent = l.run.parent_span_id;
        let mut steps = 0;
        while let (Some(p), true) = (parent, steps < batch.len()) {
            steps += 1;
            let Some(&j) = all.get(&(l.run.trace_id, p)) else {
                break;
            };
            if j == i {
                break;
            }
            if billable(&batch[j]) {
                wrapper_of[i] = Some(j);
                break;
            }
            parent = batch[j].run.parent_span_id;
        }
    }
    let mut is_wrapper = vec![false; batch.len()];
    for j in wrapper_of.iter().flatten() {
        is_wrapper[*j] = true;
    }
    // Calls beneath each wrapper, at any depth.
    let mut calls_under = vec![0usize; batch.len()];
    for i in (0..batch.len()).filter(|&i| billable(&batch[i]) && !is_wrapper[i]) {
        let mut w = wrapper_of[i];
        let mut steps = 0;
        while let (Some(j), true) = (w, steps < batch.len()) {
            steps += 1;
            calls_under[j] += 1;
            w = wrapper_of[j];
        }
    }
    for i in 0..batch.len() {
        if is_wrapper[i] {
            batch[i].billed = false;
            continue;
        }
        if !billable(&batch[i]) || wrapper_of[i].is_none() {
            continue;
        }
        // Fill what the call lacks from its sole-call wrappers, nearest first.
        let mut w = wrapper_of[i];
        let mut steps = 0;
        while let (Some(j), true) = (w, steps < batch.len()) {
            steps += 1;
            if calls_under[j] != 1 {
                break;
            }
            let (call, wrapper) = pair_mut(batch, i, j);
            let (c, wr) = (&mut call.run, &wrapper.run);
            if !c.usage_reported && wr.usage_reported {
                c.tokens = wr.tokens;
                c.usage_reported = true;
            }
            if c.model.is_none() {
                c.model = wr.model.clone();
                c.response_model = wr.response_model.clone();
                c.price_as_response = wr.price_as_response;
            } else if c.response_model.is_none() {
                c.response_model = wr.response_model.clone();
            }
            if c.provider.is_none() {
                c.provider = wr.provider.clone();
            }
            if c.time_to_first_token_s.is_none() {
                c.time_to_first_token_s = wr.time_to_first_token_s;
            }
            if c.streaming.is_none() {
                c.streaming = wr.streaming;
            }
            // A provider SDK may record its error *code* (`rate_limit_error`)
            // where the framework recorded the class the app caught.
            let is_class = |t: &Option<crate::normalize::Text>| {
                t.as_deref()
                    .is_some_and(|t| t.starts_with(|ch: char| ch.is_ascii_uppercase()))
            };
            if !is_class(&c.error_type) && is_class(&wr.error_type) {
                c.error_type = wr.error_type.clone();
            }
            w = wrapper_of[j];
        }
    }
}

/// Two distinct elements, mutably and immutably.
fn pair_mut(batch: &mut [Labeled], i: usize, j: usize) -> (&mut Labeled, &Labeled) {
    debug_assert_ne!(i, j);
    if i < j {
        let (a, b) = batch.split_at_mut(j);
        (&mut a[i], &b[0])
    } else {
        let (a, b) = batch.split_at_mut(i);
        (&mut b[0], &a[j])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{ChainRun, RunKind, Text, Tokens};
    use std::sync::Arc;

    fn run(span: u8, parent: Option<u8>, kind: RunKind, usage: Option<u64>) -> Labeled {
        let mut run = ChainRun::for_test(1, span, parent, kind);
        run.tokens = Tokens {
            input: usage.unwrap_or(0),
            output: usage.map_or(0, |u| u / 2),
            ..Tokens::default()
        };
        run.usage_reported = usage.is_some();
        Labeled::new(run, Arc::from("chain"), parent.is_none())
    }

    fn billed(batch: &[Labeled]) -> Vec<(u8, bool, u64)> {
        batch
            .iter()
            .map(|l| (l.run.span_id[0], l.billed, l.run.tokens.input))
            .collect()
    }

    #[test]
    fn a_wrapper_around_the_provider_span_is_not_a_second_call() {
        // chain 1 → llm 2 (framework, no usage) → llm 3 (SDK, usage)
        let mut b = vec![
            run(3, Some(2), RunKind::Llm, Some(100)),
            run(2, Some(1), RunKind::Llm, None),
            run(1, None, RunKind::Chain, None),
        ];
        resolve(&mut b);
        assert_eq!(
            billed(&b),
            vec![(3, true, 100), (2, false, 0), (1, false, 0)]
        );
    }

    #[test]
    fn usage_only_on_the_wrapper_moves_to_the_call() {
        let mut b = vec![
            run(1, None, RunKind::Chain, None),
            run(2, Some(1), RunKind::Llm, Some(80)),
            run(3, Some(2), RunKind::Llm, None),
        ];
        b[1].run.model = Some(Text::from("gpt-4o-mini"));
        b[1].run.time_to_first_token_s = Some(0.25);
        resolve(&mut b);
        assert_eq!(
            billed(&b),
            vec![(1, false, 0), (2, false, 80), (3, true, 80)]
        );
        assert!(b[2].run.usage_reported);
        assert_eq!(b[2].run.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(b[2].run.time_to_first_token_s, Some(0.25));
    }

    #[test]
    fn a_wrapper_over_two_calls_gives_neither_its_usage() {
        // agent-like LLM wrapper 2 over two provider calls 3, 4 (one without
        // usage): the wrapper's total must not be copied into either.
        let mut b = vec![
            run(1, None, RunKind::Chain, None),
            run(2, Some(1), RunKind::Llm, Some(300)),
            run(3, Some(2), RunKind::Llm, Some(100)),
            run(4, Some(5), RunKind::Llm, None),
            run(5, Some(2), RunKind::Tool, None),
        ];
        resolve(&mut b);
        assert_eq!(
            billed(&b),
            vec![
                (1, false, 0),
                (2, false, 300),
                (3, true, 100),
                (4, true, 0),
                (5, false, 0)
            ]
        );
        assert!(!b[3].run.usage_reported);
    }

    #[test]
    fn sibling_calls_and_other_traces_are_untouched() {
        let mut b = vec![
            run(1, None, RunKind::Chain, None),
            run(2, Some(1), RunKind::Llm, Some(10)),
            run(3, Some(1), RunKind::Embedding, Some(5)),
        ];
        let mut other = run(4, Some(2), RunKind::Llm, Some(7));
        other.run.trace_id = [2; 16];
        b.push(other);
        resolve(&mut b);
        assert_eq!(
            billed(&b),
            vec![(1, false, 0), (2, true, 10), (3, true, 5), (4, true, 7)]
        );
    }

    #[test]
    fn parent_cycles_end_the_walk() {
        let mut b = vec![
            run(1, Some(2), RunKind::Llm, Some(1)),
            run(2, Some(1), RunKind::Llm, Some(2)),
            run(3, Some(3), RunKind::Llm, Some(3)),
        ];
        resolve(&mut b);
        // 1 and 2 wrap each other: both are wrappers, nothing is billed twice.
        assert_eq!(b.iter().filter(|l| l.billed).count(), 1);
    }
}
