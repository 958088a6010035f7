//! The browser bench's both-ways exchange (two replicas, 5,000 offline actions each on one document, then each
//! integrates the other's) through the same exported calls the browser client makes (`ReplicaCore`: JSON text in,
//! JSON text out), natively: for `perf` and for timing each call. Not a test.
//!
//!   cargo run --release -p folio-wasm --example exchange          # N=5000 ROUNDS=3
use std::time::Instant;

use folio_wasm::ReplicaCore;
use serde_json::Value;

/// The entry texts of an answer of own actions (one unit): its JSON, then its operation texts, then its entries.
fn entries_of(answer: &str) -> Vec<String> {
    let mut lines = answer.split('\n');
    let head: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert!(head.get("error").is_none(), "{answer}");
    let count = head["count"].as_u64().unwrap() as usize;
    lines.skip(count).map(str::to_owned).collect()
}

fn main() {
    let n: usize = std::env::var("N").ok().and_then(|s| s.parse().ok()).unwrap_or(5000);
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    for _ in 0..rounds {
        let mut a = ReplicaCore::new("aaaaaaaaaaaaaaaa", 1, 2);
        let mut b = ReplicaCore::new("bbbbbbbbbbbbbbbb", 3, 4);
        let created = a.create("folio/todo-list", "sync", "", "");
        let created_v: Value = serde_json::from_str(created.split('\n').next().unwrap()).unwrap();
        let id = created_v["documentId"].as_str().unwrap().to_owned();
        let create_entries = entries_of(&created);
        let r = b.integrate(&format!("[{}]", create_entries.join(",")));
        assert!(!r.contains("\"error\""), "{r}");
        let mut sent = [Vec::new(), Vec::new()];
        let t = Instant::now();
        for (k, (core, who)) in [(&mut a, "a"), (&mut b, "b")].into_iter().enumerate() {
            for i in (0..n).step_by(250) {
                let batch: Vec<Value> = (i..i + 250)
                    .map(|k| serde_json::json!({"type": "ADD_TODO", "input": {"id": format!("{who}{}", k % 400), "title": format!("{who} {k}")}}))
                    .collect();
                let answer = core.apply(&id, "main", &serde_json::to_string(&batch).unwrap());
                sent[k].extend(entries_of(&answer));
            }
        }
        let applied = t.elapsed();
        let pull = |texts: &[String]| format!("{{\"entries\":[{}],\"cursor\":1,\"more\":false}}", texts.join(","));
        let (to_b, to_a) = (pull(&sent[0]), pull(&sent[1]));
        let t = Instant::now();
        let rb = b.integrate(&to_b);
        let b_ms = t.elapsed();
        let t = Instant::now();
        let ra = a.integrate(&to_a);
        let a_ms = t.elapsed();
        let t = Instant::now();
        let vb: Value = serde_json::from_str(rb.split('\n').next().unwrap()).unwrap();
        let parse_ms = t.elapsed();
        let appended: usize = vb["appended"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["count"].as_u64().unwrap() as usize)
            .sum();
        assert_eq!(
            serde_json::from_str::<Value>(&a.document(&id, "main")).unwrap()["stateHash"],
            serde_json::from_str::<Value>(&b.document(&id, "main")).unwrap()["stateHash"]
        );
        println!(
            "applies {:.0} ms; b integrates {n} (rebase, {appended} ops appended, answer {} KB) {:.1} ms; a integrates {n} (append) {:.1} ms; answer parse {:.1} ms; answer a {} KB",
            applied.as_secs_f64() * 1e3,
            rb.len() / 1024,
            b_ms.as_secs_f64() * 1e3,
            a_ms.as_secs_f64() * 1e3,
            parse_ms.as_secs_f64() * 1e3,
            ra.len() / 1024,
        );
    }
}
