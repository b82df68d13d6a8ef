//! How a request ended, when its root does not say.
//!
//! A request is one root run (an invocation of the app's chain or agent),
//! and its outcome is normally the root's status. Some roots carry no status
//! at all (OTel `UNSET`): the OpenAI Agents SDK's trace span stays unset
//! when the agent run under it raises. Such a request ended the way its
//! *last* step ended: if the step that finished last failed, the request
//! failed with that step's error class; if a failed attempt was followed by
//! a successful one (a retry, a fallback), it did not. A root with an
//! explicit status (OK or ERROR) is never second-guessed.

use super::assembly::Labeled;
use crate::normalize::RunStatus;

/// Resolves the outcome of every unset request root in `batch` from its
/// direct children in the same batch.
pub fn resolve(batch: &mut [Labeled]) {
    for r in 0..batch.len() {
        let root = &batch[r];
        if !(root.is_request && root.run.status_unset) {
            continue;
        }
        let (trace, span) = (root.run.trace_id, root.run.span_id);
        let last = batch
            .iter()
            .enumerate()
            .filter(|(i, l)| {
                *i != r && l.run.trace_id == trace && l.run.parent_span_id == Some(span)
            })
            .max_by_key(|(i, l)| (l.run.end_unix_nano, *i))
            .map(|(i, _)| i);
        let Some(last) = last else { continue };
        if batch[last].run.status == RunStatus::Error {
            let error_type = batch[last].run.error_type.clone();
            let root = &mut batch[r].run;
            root.status = RunStatus::Error;
            root.status_unset = false;
            root.error_type = error_type;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{ChainRun, Dialect, RunKind, Text, Tokens};
    use std::sync::Arc;

    fn run(span: u8, parent: Option<u8>, end: u64, status: RunStatus, unset: bool) -> Labeled {
        let run = ChainRun {
            trace_id: [7; 16],
            span_id: [span; 8],
            parent_span_id: parent.map(|p| [p; 8]),
            dialect: Dialect::OpenInference,
            service: Arc::from("svc"),
            name: Text::from(format!("run{span}")),
            kind: RunKind::Chain,
            setup: false,
            model: None,
            response_model: None,
            provider: None,
            tokens: Tokens::default(),
            usage_reported: false,
            start_unix_nano: 0,
            end_unix_nano: end,
            status,
            status_unset: unset,
            error_type: (status == RunStatus::Error).then(|| Text::from("RateLimitError")),
            tags: vec![],
            metadata: vec![],
            session_id: None,
            user_id: None,
            streaming: None,
            time_to_first_token_s: None,
            cache_hit: None,
            inputs: None,
            outputs: None,
        };
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
        assert_eq!(b[1].run.error_type.as_deref(), Some("RateLimitError"));
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
        // An explicit OK root is not second-guessed.
        let mut b = vec![
            run(2, Some(1), 5, RunStatus::Error, false),
            run(1, None, 6, RunStatus::Ok, false),
        ];
        resolve(&mut b);
        assert_eq!(b[1].run.status, RunStatus::Ok);
    }
}
