//! Opening a keyframed document, natively, through the call the browser client makes (`ReplicaCore::load` with a
//! `LoadInput` text, then `document`): for `perf` and for timing its parts. Not a test. The input is what the
//! client's `loadInput` reads from IndexedDB (a file, e.g. written by a bench), or one made here: a todo list of
//! 500 items, 1,000 operations applied in batches of 250, loaded from its keyframe at 750 and a tail of 249.
//!
//!   cargo run --release -p folio-wasm --example load                 # ROUNDS=200 [INPUT=path/to/load-input.json]
use std::time::Instant;

use folio_wasm::ReplicaCore;
use serde_json::Value;

/// The operation texts of an answer of own actions (one unit): its JSON, then its operation texts.
fn ops_of(answer: &str) -> (Value, Vec<String>) {
    let mut lines = answer.split('\n');
    let head: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert!(head.get("error").is_none(), "{answer}");
    let count = head["count"].as_u64().unwrap() as usize;
    (head, lines.take(count).map(str::to_owned).collect())
}

/// The bench's document: created, then 999 actions in batches of 250 (the last keyframe at 750).
fn made() -> (String, String) {
    let mut core = ReplicaCore::new("aaaaaaaaaaaaaaaa", 1, 2);
    let (created, document_ops) = ops_of(&core.create("folio/todo-list", "open 1000", "", ""));
    let id = created["documentId"].as_str().unwrap().to_owned();
    let mut global = Vec::new();
    let mut keyframe = (0, String::from("null"));
    for i in (1..1000).step_by(250) {
        let batch: Vec<Value> = (i..(i + 250).min(1000))
            .map(|k| {
                if k <= 500 {
                    serde_json::json!({"type": "ADD_TODO", "input": {"id": format!("i{k}"), "title": format!("title {k}")}})
                } else {
                    serde_json::json!({"type": "UPDATE_TODO", "input": {"id": format!("i{}", k % 500 + 1), "done": k % 2 == 0, "title": format!("title {k}")}})
                }
            })
            .collect();
        let (head, ops) = ops_of(&core.apply(&id, "main", &serde_json::to_string(&batch).unwrap()));
        global.extend(ops);
        if let (Some(k), Some(rev)) = (head["keyframe"].as_str(), head["keyframeRevision"].as_u64()) {
            keyframe = (rev as usize, k.to_owned());
        }
    }
    let input = format!(
        r#"{{"id":"{id}","branch":"main","documentOps":[{}],"keyframe":{},"globalOps":[{}],"localOps":[]}}"#,
        document_ops.join(","),
        keyframe.1,
        global[keyframe.0..].join(",")
    );
    (id, input)
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let (id, input) = match std::env::var("INPUT") {
        Ok(path) => {
            let input = std::fs::read_to_string(path).unwrap();
            let v: Value = serde_json::from_str(&input).unwrap();
            (v["id"].as_str().unwrap().to_owned(), input)
        }
        Err(_) => made(),
    };
    let mut load = Vec::new();
    let mut document = Vec::new();
    for _ in 0..rounds {
        let mut core = ReplicaCore::new("bbbbbbbbbbbbbbbb", 3, 4);
        let t = Instant::now();
        let answer = core.load(&input);
        load.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(answer.contains("loaded"), "{answer}");
        let t = Instant::now();
        let doc = core.document(&id, "main");
        document.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(doc.len() > 100);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "input {} KB: load {:.3} ms, document {:.3} ms (medians of {rounds})",
        input.len() / 1024,
        med(&mut load),
        med(&mut document)
    );
}
