//! The dependency direction, checked: no stage imports a later one
//! (receive → normalize → aggregate → export, forward beside; see the
//! README's "How it works").

use std::path::Path;

/// Every `.rs` file under `src/<dir>` (or `src/<dir>.rs`), with its text.
fn sources(dir: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut stack = vec![root.join(dir)];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).expect("read src dir").flatten() {
                stack.push(e.path());
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&p).expect("read source");
            out.push((p.display().to_string(), text));
        }
    }
    assert!(!out.is_empty(), "no sources under src/{dir}");
    out
}

#[test]
fn no_stage_imports_a_later_one() {
    let rules: [(&str, &[&str]); 5] = [
        ("receive", &["normalize", "aggregate", "export", "forward"]),
        ("normalize", &["receive", "aggregate", "export", "forward"]),
        ("aggregate", &["receive", "forward"]),
        ("export", &["receive", "normalize", "aggregate", "forward"]),
        (
            "otlp",
            &["receive", "normalize", "aggregate", "export", "forward"],
        ),
    ];
    for (stage, forbidden) in rules {
        for (path, text) in sources(stage) {
            for later in forbidden {
                let needle = format!("crate::{later}");
                assert!(
                    !text.contains(&needle),
                    "{path} imports {needle}: {stage}/ must not depend on {later}/"
                );
            }
        }
    }
    for (path, text) in sources("forward") {
        assert!(
            !text.contains("crate::receive"),
            "{path}: forward/ returns its own errors; the pipeline maps them"
        );
    }
}
