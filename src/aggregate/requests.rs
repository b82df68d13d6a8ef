//! How a request ended, when its root does not say it truthfully.
//!
//! A request is one root run (an invocation of the app's chain or agent),
//! and its outcome is normally the root's status. Two shapes hide a failure
//! from the root:
//! * the root carries no status at all (OTel `UNSET`);
//! * the root says OK although the invocation raised: OpenInference's
//!   OpenAI Agents processor ends the trace's spans OK whatever happened,
//!   and only the agent span under them records the error.
//!
//! The rule: follow the path of *last steps* down from the root (at each
//! level, the child that finished last). If an orchestrating step on that
//! path (a chain or an agent) failed, the failure reached the end of the
//! invocation and the request failed (the step counted its own error; the
//! root adds none). An
//! unset root also fails when its own last step failed, whatever its kind.
//! A failure followed by a successful step (a retry, a fallback, a tool
//! error the agent recovered from) is off that path, so the request stays
//! OK. A root that says ERROR is never second-guessed.

use super::assembly::Labeled;
use crate::normalize::{RunKind, RunStatus, SpanId, TraceId};
use foldhash::fast::RandomState;
use std::collections::HashMap;

/// Settles the outcome of every request root in `batch` from its
/// descendants in the same batch.
pub fn resolve(batch: &mut [Labeled]) {
    let open = |l: &Labeled| l.is_request && l.run.status != RunStatus::Error;
    if !batch.iter().any(open) {
        return;
    }
    // Each run's last-finishing child, in one pass (a batch can hold many
    // traces: a sweep or a drain releases them together).
    let mut last_child: HashMap<(TraceId, SpanId), usize, RandomState> = HashMap::default();
    for (i, l) in batch.iter().enumerate() {
        let Some(parent) = l.run.parent_span_id else {
            continue;
        };
        last_child
            .entry((l.run.trace_id, parent))
            .and_modify(|j| {
                if (l.run.end_unix_nano, i) > (batch[*j].run.end_unix_nano, *j) {
                    *j = i;
                }
            })
            .or_insert(i);
    }
    for r in 0..batch.len() {
        if open(&batch[r]) && failed_last_step(batch, r, &last_child) {
            // The request failed; the root run itself recorded no error, so
            // it adds none to `chainpulse_errors_total` (the failed step
            // already counted its own).
            let root = &mut batch[r].run;
            root.status = RunStatus::Error;
            root.status_unset = false;
        }
    }
}

/// Whether a failed step ended the invocation under `root`.
fn failed_last_step(
    batch: &[Labeled],
    root: usize,
    last_child: &HashMap<(TraceId, SpanId), usize, RandomState>,
) -> bool {
    let trace = batch[root].run.trace_id;
    let mut cur = root;
    // Bounded by the batch, so a parent cycle cannot loop.
    for _ in 0..batch.len() {
        let Some(&last) = last_child.get(&(trace, batch[cur].run.span_id)) else {
            return false;
        };
        if last == cur {
            return false;
        }
        let step = &batch[last].run;
        let orchestrates = matches!(step.kind, RunKind::Chain | RunKind::Agent);
        let unset_root_step = cur == root && batch[root].run.status_unset;
        if step.status == RunStatus::Error {
            return orchestrates || unset_root_step;
        }
        if !orchestrates {
            return false;
        }
        cur = last;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{ChainRun, RunKind, Text};
    use std::sync::Arc;

    fn run(span: u8, parent: Option<u8>, end: u64, status: RunStatus, unset: bool) -> Labeled {
        step(span, parent, end, status, unset, RunKind::Chain)
    }

    fn step(
        span: u8,
        parent: Option<u8>,
        end: u64,
        status: RunStatus,
        unset: bool,
        kind: RunKind,
    ) -> Labeled {
        let mut run = ChainRun::for_test(7, span, parent, kind);
        run.end_unix_nano = end;
        run.status = status;
        run.status_unset = unset;
        run.error_type = (status == RunStatus::Error).then(|| Text::from("RateLimitError"));
        Labeled::new(run, Arc::from("wf"), parent.is_none())
    }

    #[test]
    fn an_unset_root_fails_with_its_last_step() {
        let mut b = vec![
            run(2, Some(1), 5, RunStatus::Error, false),
            run(1, None, 6, RunStatus::Ok, true),
        ];
        resolve(&mut b);
        assert_eq!(b[1].run.status, RunStatus::Error);
        assert_eq!(b[1].run.error_type, None, "no second error for the root");
    }

    #[test]
    fn an_ok_root_over_a_failed_agent_failed() {
        // OpenAI Agents SDK under OpenInference: workflow (OK) → workflow
        // chain (OK) → agent (ERROR), nothing after it.
        let mut b = vec![
            step(3, Some(2), 4, RunStatus::Error, false, RunKind::Agent),
            step(2, Some(1), 5, RunStatus::Ok, false, RunKind::Chain),
            step(1, None, 6, RunStatus::Ok, false, RunKind::Agent),
        ];
        resolve(&mut b);
        assert_eq!(b[2].run.status, RunStatus::Error);
    }

    #[test]
    fn a_failed_leaf_under_an_ok_root_is_handled() {
        // A tool failed and its agent returned normally: not a failure.
        let mut b = vec![
            step(2, Some(1), 4, RunStatus::Error, false, RunKind::Tool),
            step(1, None, 6, RunStatus::Ok, false, RunKind::Agent),
        ];
        resolve(&mut b);
        assert_eq!(b[1].run.status, RunStatus::Ok);
    }

    #[test]
    fn a_recovered_failure_or_an_explicit_status_is_kept() {
        // A failed attempt, then a successful fallback: the request is ok.
        let mut b = vec![
            run(2, Some(1), 3, RunStatus::Error, false),
            run(3, Some(1), 5, RunStatus::Ok, false),
            run(1, None, 6, RunStatus::Ok, true),
        ];
        resolve(&mut b);
        assert_eq!(b[2].run.status, RunStatus::Ok);
        // An explicit OK root over a failed *leaf* (an LLM call) stays OK.
        let mut b = vec![
            step(2, Some(1), 5, RunStatus::Error, false, RunKind::Llm),
            run(1, None, 6, RunStatus::Ok, false),
        ];
        resolve(&mut b);
        assert_eq!(b[1].run.status, RunStatus::Ok);
    }
}
