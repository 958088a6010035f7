//! What signed actions cost (issue 24), each figure beside its baseline in the same run:
//!
//! * `signature/hash`: blake3 of one todo operation's canonical encoding (`Operation::new`), the per-operation
//!   work every append already does; `signature/sign` and `signature/verify`: Ed25519 over the same action's
//!   signing bytes (the canonical JSON is serialized again for each).
//! * `verify_all/{100,1000}`: the batch verification every integration uses, per action, each action signed alone;
//!   `verify_all/{100,1000}-batched`: the same actions signed 32 to a batch signature (`ReplicaKey::sign_all`), so
//!   one Ed25519 check covers 32 actions and the rest is each action's leaf and proof hashes.
//! * `sign_all/1000`: signing 1,000 actions in batches, per action, beside `signature/sign`.
//! * `apply/{unsigned,signed}`: one action per job through a reactor on SQLite (submit → durable), without and with
//!   a replica key, so the signing is seen against the whole per-operation cost of an append.
//!
//! Run: `cargo bench --bench signature`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

use folio::core::signature;
use folio::store::SqliteStore;
use folio::{Action, HlcTimestamp, ModelRegistry, OpHash, Operation, Reactor, ReactorConfig, Scope, Submit};

fn action() -> Action {
    Action::new(
        "UPDATE_TODO",
        json!({"id": "item-17", "title": "title 123456", "done": true}),
        Scope::Global,
        HlcTimestamp::new(1_765_000_000_000, 3),
    )
}

fn per_operation(c: &mut Criterion) {
    let key = folio::core::ReplicaKey::from_seed(&[9; 32]);
    let mut signed = action();
    key.sign(&mut signed);
    let mut group = c.benchmark_group("signature");
    group.throughput(Throughput::Elements(1));
    group.bench_function("hash", |b| {
        b.iter(|| Operation::new(std::hint::black_box(signed.clone()), 5, 0, None, &OpHash::ZERO))
    });
    group.bench_function("sign", |b| {
        b.iter(|| {
            let mut a = std::hint::black_box(signed.clone());
            key.sign(&mut a);
            a
        })
    });
    group.bench_function("verify", |b| {
        b.iter(|| signature::verify(std::hint::black_box(&signed)).unwrap())
    });
    group.finish();

    // `verify_all` per action: 100 actions (one thread: each signer's key decoded once, no decompression of R),
    // and 1,000 (split between the cores).
    let mut group = c.benchmark_group("verify_all");
    for n in [100usize, 1000] {
        let actions: Vec<Action> = (0..n)
            .map(|i| {
                let mut a = action();
                a.input = json!({"id": format!("item-{i}"), "title": "title 123456", "done": true});
                key.sign(&mut a);
                a
            })
            .collect();
        let refs: Vec<&Action> = actions.iter().collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{n}"), |b| {
            b.iter(|| signature::verify_all(std::hint::black_box(&refs)))
        });
        let mut batched = actions.clone();
        key.sign_all(batched.iter_mut());
        let refs: Vec<&Action> = batched.iter().collect();
        group.bench_function(format!("{n}-batched"), |b| {
            b.iter(|| signature::verify_all(std::hint::black_box(&refs)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("sign_all");
    let mut actions: Vec<Action> = (0..1000)
        .map(|i| {
            let mut a = action();
            a.input = json!({"id": format!("item-{i}"), "title": "title 123456", "done": true});
            a
        })
        .collect();
    group.throughput(Throughput::Elements(1000));
    group.bench_function("1000", |b| {
        b.iter(|| key.sign_all(std::hint::black_box(actions.iter_mut())))
    });
    group.finish();
}

const OPS: usize = 200;

fn apply(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("apply");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(OPS as u64));
    for signed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (reactor, id) = rt.block_on(async {
            let store = Arc::new(SqliteStore::open(dir.path().join("folio.db")).await.unwrap());
            // `open` takes the store's key and signs; `new` with no key does not.
            let reactor = if signed {
                Reactor::open(store, Arc::new(ModelRegistry::with_builtin()), ReactorConfig::default())
                    .await
                    .unwrap()
            } else {
                Reactor::new(store, Arc::new(ModelRegistry::with_builtin()), ReactorConfig::default())
            };
            let id = reactor
                .create_document("folio/todo-list", "bench", None)
                .await
                .unwrap()
                .header
                .id;
            (reactor, id)
        });
        let mut n = 0u64;
        group.bench_function(if signed { "signed" } else { "unsigned" }, |b| {
            b.to_async(&rt).iter(|| {
                let reactor = reactor.clone();
                let start = n;
                n += OPS as u64;
                async move {
                    for i in start..start + OPS as u64 {
                        let a = reactor.action("ADD_TODO", json!({"id": format!("i{i}"), "title": "t"}), Scope::Global);
                        let done = reactor.apply(Submit::new(id, vec![a])).await.unwrap();
                        assert_eq!(done.operations[0].action.signer.is_some(), signed);
                    }
                }
            })
        });
        rt.block_on(reactor.shutdown());
    }
    group.finish();
}

criterion_group!(benches, per_operation, apply);
criterion_main!(benches);
