//! Signed actions through real HTTP and real replicas: a server under `--require-signatures` takes the actions its
//! replicas sign, refuses forged, stolen, replayed and malformed ones with their named code (a submit with 422, a
//! push in `rejected`), stores none of them, and a replica refuses a bad signature in what it pulls.

mod common;

use std::sync::Arc;

use serde_json::{Value, json};

use folio_core::{Action, DocumentId, HlcTimestamp, ModelRegistry, Operation, ReplicaKey, Scope, SyncUnit};
use folio_reactor::{ReactorConfig, Submit};
use folio_server::Role;
use folio_server::auth::{NewTokenSpec, Tokens};
use folio_store::{OperationStore, SqliteStore, verify};
use folio_sync::{HttpRemote, Replica, RoundOptions, sync_round};

fn now() -> u64 {
    folio_core::clock::system_millis()
}

/// An ADD_TODO of `key`'s replica, signed, with a clock `ahead` ms after now (after what the unit holds).
fn signed_add(key: &ReplicaKey, item: &str, ahead: u64) -> Action {
    let mut a = Action::new(
        "ADD_TODO",
        json!({"id": item, "title": item}),
        Scope::Global,
        HlcTimestamp::new(now() + ahead, 0),
    );
    key.sign(&mut a);
    a
}

/// The submit body of one action, with every authorship field it carries.
fn submit_body(a: &Action) -> Value {
    let mut v = serde_json::to_value(a).unwrap();
    // `counter` is omitted when zero; the rest is the action's wire JSON.
    v.as_object_mut().unwrap().retain(|_, x| !x.is_null());
    json!({ "actions": [v] })
}

async fn global_ops(s: &common::TestServer, doc: &str) -> Vec<Value> {
    let (status, page) = s.get(&format!("/v1/documents/{doc}/operations?scope=global")).await;
    assert_eq!(status, 200, "{page}");
    page["operations"].as_array().unwrap().clone()
}

/// The hostile-input table for the new fields: each case refused with its code on a submit, and listed with the
/// same code in a push's `rejected`; nothing of any of them is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_stolen_replayed_and_malformed_signatures_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::start_with(dir.path(), ReactorConfig::default(), |mut c| {
        c.require_signatures = true;
        c
    })
    .await;
    let (_, info) = s.get("/v1/sync/info").await;
    let server_replica = info["replica"].as_str().unwrap().to_owned();
    let doc = s.create_todo().await;

    // What the server authors (a client names no replica) it signs with its own key.
    assert_eq!(s.add(&doc, "plain").await.0, 200);
    let ops = global_ops(&s, &doc).await;
    let plain: Action = serde_json::from_value(ops[0]["action"].clone()).unwrap();
    assert_eq!(plain.replica.as_deref(), Some(server_replica.as_str()));
    assert_eq!(
        folio_core::signature::verify(&plain),
        Ok(true),
        "the server signed its own action"
    );

    // A client that signs: accepted under --require-signatures, stored with its signature.
    let me = ReplicaKey::from_seed(&[11; 32]);
    let other = ReplicaKey::from_seed(&[12; 32]);
    let good = signed_add(&me, "mine", 100);
    let got = s
        .post(&format!("/v1/documents/{doc}/actions"), submit_body(&good))
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    let ops = global_ops(&s, &doc).await;
    assert_eq!(ops.len(), 2);
    let stored: Action = serde_json::from_value(ops[1]["action"].clone()).unwrap();
    assert_eq!(stored, good, "stored exactly as signed");

    let base = signed_add(&me, "bad", 1000);
    let with = |f: &dyn Fn(&mut Action)| {
        let mut a = base.clone();
        f(&mut a);
        a
    };
    let mut unsigned_other = Action::new(
        "ADD_TODO",
        json!({"id": "u", "title": "u"}),
        Scope::Global,
        base.timestamp(),
    );
    unsigned_other.replica = Some(me.replica_id().to_owned());
    let cases: Vec<(&str, Action, &str)> = vec![
        (
            "signer not base64url",
            with(&|a| a.signer = Some("!".repeat(43))),
            "BAD_SIGNATURE",
        ),
        (
            "signer of the wrong length",
            with(&|a| a.signer = Some("AAAA".into())),
            "BAD_SIGNATURE",
        ),
        (
            "signer padded base64",
            with(&|a| a.signer = Some(format!("{}=", a.signer.clone().unwrap()))),
            "BAD_SIGNATURE",
        ),
        (
            "signature of the wrong length",
            with(&|a| a.signature = Some(a.signature.clone().unwrap()[..80].to_owned())),
            "BAD_SIGNATURE",
        ),
        (
            "signature of other content",
            with(&|a| a.input = json!({"id": "x", "title": "forged"})),
            "BAD_SIGNATURE",
        ),
        ("signature of another clock", with(&|a| a.counter = 1), "BAD_SIGNATURE"),
        (
            "a valid signature replayed under another key",
            with(&|a| {
                a.signer = Some(other.public().to_owned());
                a.replica = Some(other.replica_id().to_owned());
            }),
            "BAD_SIGNATURE",
        ),
        (
            "the replica id of someone else, signed with one's own key",
            with(&|a| {
                a.replica = Some(other.replica_id().to_owned());
                a.signature = None;
                a.signer = None;
                let mut b = a.clone();
                me.sign(&mut b);
                a.signer = b.signer;
                a.signature = b.signature;
            }),
            "BAD_SIGNATURE",
        ),
        (
            "the server's replica id without its key",
            with(&|a| a.replica = Some(server_replica.clone())),
            "BAD_SIGNATURE",
        ),
        (
            "a signer without a signature",
            with(&|a| a.signature = None),
            "BAD_SIGNATURE",
        ),
        (
            "a signature without a signer",
            with(&|a| a.signer = None),
            "BAD_SIGNATURE",
        ),
        (
            "a huge signer",
            with(&|a| a.signer = Some("A".repeat(300_000))),
            "BAD_SIGNATURE",
        ),
        (
            "a huge signature",
            with(&|a| a.signature = Some("A".repeat(300_000))),
            "BAD_SIGNATURE",
        ),
        ("unsigned, naming a replica", unsigned_other, "SIGNATURE_REQUIRED"),
    ];
    for (name, action, code) in &cases {
        let got = s
            .post(&format!("/v1/documents/{doc}/actions"), submit_body(action))
            .await;
        common::assert_error(&got, 422, code);
        assert_eq!(got.1["error"]["details"]["actionIndex"], 0, "{name}: {}", got.1);
    }
    assert_eq!(global_ops(&s, &doc).await.len(), 2, "no refused submit stored anything");

    // The same table through a push, each in its own push (one replica a push), beside a good action.
    let doc_id: DocumentId = doc.parse().unwrap();
    let entry = |a: &Action| json!({"documentId": doc_id, "scope": "global", "branch": "main", "action": a});
    for (i, (name, action, code)) in cases.iter().enumerate() {
        let pusher = action.replica.clone().unwrap_or_else(|| "nobody".into());
        if pusher == server_replica {
            // No replica pushes as the server: refused before any signature is looked at.
            let got = s
                .post("/v1/sync/push", json!({"replica": pusher, "entries": [entry(action)]}))
                .await;
            common::assert_error(&got, 400, "BAD_REQUEST");
            continue;
        }
        let mut entries = vec![entry(action)];
        if pusher == me.replica_id() {
            entries.push(entry(&signed_add(&me, &format!("ok-{i}"), 2000)));
        }
        let (status, answer) = s
            .post("/v1/sync/push", json!({"replica": pusher, "entries": entries}))
            .await;
        assert_eq!(status, 200, "{name}: {answer}");
        let rejected = answer["rejected"].as_array().unwrap();
        assert_eq!(rejected.len(), 1, "{name}: {answer}");
        assert_eq!(rejected[0]["actionId"], json!(action.id), "{name}");
        let reason = rejected[0]["reason"].as_str().unwrap();
        assert!(reason.starts_with(&format!("{code}: ")), "{name}: {reason}");
        assert_eq!(answer["new"], entries.len() - 1, "{name}: the rest of the push went on");
    }
    let ops = global_ops(&s, &doc).await;
    let ids: Vec<&Value> = ops.iter().map(|o| &o["action"]["id"]).collect();
    for (name, action, _) in &cases {
        assert!(!ids.contains(&&json!(action.id)), "{name} was stored");
    }
    s.stop().await;
    let store = SqliteStore::open(dir.path().join("folio.db")).await.unwrap();
    let report = verify(&store).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.broken);
    assert_eq!(report.signed, report.operations, "every stored operation is signed");
}

async fn replica_on(dir: &std::path::Path) -> Replica {
    let store = SqliteStore::open(dir.join("folio.db")).await.unwrap();
    let config = ReactorConfig {
        executors: 2,
        ..ReactorConfig::default()
    };
    Replica::open(Arc::new(store), Arc::new(ModelRegistry::with_builtin()), config)
        .await
        .unwrap()
}

/// Real replicas sign what they author; a server that requires signatures takes it all and its log verifies; a
/// replica that pulls an action whose signature does not verify refuses it and stores nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_sign_their_actions_and_refuse_bad_ones_they_pull() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::start_with(&dir.path().join("server"), ReactorConfig::default(), |mut c| {
        c.require_signatures = true;
        c
    })
    .await;
    let remote = HttpRemote::new(&s.base, Some(s.admin.clone())).unwrap();
    let a_dir = tempfile::tempdir().unwrap();
    let a = replica_on(a_dir.path()).await;
    let key = a.reactor().store().replica_key().await.unwrap();
    assert_eq!(a.id(), key.replica_id(), "the replica id derives from the store's key");
    let doc = a
        .reactor()
        .create_document("folio/todo-list", "signed", None)
        .await
        .unwrap()
        .header
        .id;
    let add = a
        .reactor()
        .action("ADD_TODO", json!({"id": "a", "title": "a"}), Scope::Global);
    a.reactor().apply(Submit::new(doc, vec![add])).await.unwrap();
    let report = sync_round(&a, &remote, &RoundOptions::default()).await.unwrap();
    assert_eq!((report.pushed, report.pushed_new), (2, 2), "{report:?}");
    assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
    let ops = global_ops(&s, &doc.to_string()).await;
    let stored: Action = serde_json::from_value(ops[0]["action"].clone()).unwrap();
    assert_eq!(stored.replica.as_deref(), Some(a.id()));
    assert_eq!(stored.signer.as_deref(), Some(key.public()));
    assert_eq!(folio_core::signature::verify(&stored), Ok(true));

    // A second replica pulls from a peer whose log holds a tampered action (its input changed after signing, its
    // hash chain recomputed): it refuses it by its signature, and has nothing of it.
    let peer_dir = tempfile::tempdir().unwrap();
    let peer = replica_on(peer_dir.path()).await;
    sync_round(&peer, &remote, &RoundOptions::default()).await.unwrap();
    let unit = SyncUnit::main(doc, Scope::Global);
    let (revision, head) = peer.reactor().store().head(&unit).await.unwrap();
    let mut forged = signed_add(&key, "forged", 0);
    forged.input = json!({"id": "forged", "title": "changed after signing"});
    let op = Operation::new(forged.clone(), revision, 0, None, &head);
    peer.reactor().store().append(&unit, revision, vec![op]).await.unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let b = replica_on(b_dir.path()).await;
    let report = sync_round(&b, &peer, &RoundOptions::default()).await.unwrap();
    assert!(
        report
            .conflicts
            .iter()
            .any(|c| c.action_id == forged.id && c.reason.starts_with("BAD_SIGNATURE: ")),
        "{report:?}"
    );
    let got = b
        .reactor()
        .get(doc, &Default::default())
        .await
        .unwrap()
        .expect("the document came");
    assert!(
        got.global_json()["items"].get("forged").is_none(),
        "{}",
        got.global_json()
    );
    assert!(got.global_json()["items"].get("a").is_some(), "{}", got.global_json());
    // `verify` on the peer names the bad signature.
    let report = verify(peer.reactor().store().as_ref()).await.unwrap();
    let broken = report.broken.expect("verify finds the forged action");
    assert!(broken.reason.starts_with("BAD_SIGNATURE: "), "{}", broken.reason);
    s.stop().await;
}

/// A document a replica created offline and pushes with a principal's write token to a server that requires
/// signatures becomes that principal's: the server's claim of it is signed like its other actions (unsigned, it was
/// refused and the document stayed ownerless, open to every token), and the replica's own grant change stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_offline_document_pushed_under_required_signatures_is_its_pushers() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::start_with(&dir.path().join("server"), ReactorConfig::default(), |mut c| {
        c.require_signatures = true;
        c
    })
    .await;
    let spec = NewTokenSpec {
        principal: Some("dana".into()),
        ..NewTokenSpec::role(Role::Write)
    };
    let dana = Tokens::create_with(&s.data_dir, &spec).unwrap().0;
    let other = Tokens::create_with(
        &s.data_dir,
        &NewTokenSpec {
            principal: Some("eve".into()),
            ..NewTokenSpec::role(Role::Write)
        },
    )
    .unwrap()
    .0;
    let a_dir = tempfile::tempdir().unwrap();
    let a = replica_on(a_dir.path()).await;
    let doc = a
        .reactor()
        .create_document("folio/todo-list", "offline", None)
        .await
        .unwrap()
        .header
        .id;
    let share = a.reactor().action(
        "SET_GRANTS",
        json!({"grants": [{"principal": "frank", "access": "read"}]}),
        Scope::Document,
    );
    a.reactor().apply(Submit::new(doc, vec![share])).await.unwrap();
    let remote = HttpRemote::new(&s.base, Some(dana.clone())).unwrap();
    let report = sync_round(&a, &remote, &RoundOptions::default()).await.unwrap();
    assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
    let grants = |token: String| {
        let (s, doc) = (&s, doc);
        async move {
            let resp = s
                .client
                .get(s.url(&format!("/v1/documents/{doc}/grants")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(
        grants(dana).await,
        (
            200,
            json!({"owner": "dana", "grants": [{"principal": "frank", "access": "read"}]})
        )
    );
    assert_eq!(grants(other).await.0, 404, "not open to every token");
    let data_dir = s.data_dir.clone();
    s.stop().await;
    let store = SqliteStore::open(data_dir.join("folio.db")).await.unwrap();
    let report = verify(&store).await.unwrap();
    assert!(report.broken.is_none(), "every signature verifies: {:?}", report.broken);
}

/// A store an earlier version gave a random replica id moves to the id its new key derives, and its actions made
/// under the former id that were never pushed still reach the server (unsigned, as that replica), beside the new
/// signed ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgraded_store_pushes_what_it_made_under_its_former_id() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::start(&dir.path().join("server")).await;
    let remote = HttpRemote::new(&s.base, Some(s.admin.clone())).unwrap();
    let a_dir = tempfile::tempdir().unwrap();
    let legacy = "00112233aabbccdd";
    let doc = {
        // What an earlier version did: a random id in the meta table, no key, unsigned actions.
        let store = Arc::new(SqliteStore::open(a_dir.path().join("folio.db")).await.unwrap());
        store.put_meta(folio_store::REPLICA_ID_KEY, legacy).await.unwrap();
        let config = ReactorConfig {
            replica_id: legacy.into(),
            ..ReactorConfig::default()
        };
        let reactor = folio_reactor::Reactor::new(store, Arc::new(ModelRegistry::with_builtin()), config);
        let doc = reactor
            .create_document("folio/todo-list", "old", None)
            .await
            .unwrap()
            .header
            .id;
        let add = reactor.action("ADD_TODO", json!({"id": "old", "title": "old"}), Scope::Global);
        let done = reactor.apply(Submit::new(doc, vec![add])).await.unwrap();
        assert!(done.operations[0].action.signer.is_none());
        reactor.shutdown().await;
        doc
    };
    let a = replica_on(a_dir.path()).await;
    assert_ne!(a.id(), legacy);
    assert_eq!(a.former_id().await.unwrap().as_deref(), Some(legacy));
    let add = a
        .reactor()
        .action("ADD_TODO", json!({"id": "new", "title": "new"}), Scope::Global);
    a.reactor().apply(Submit::new(doc, vec![add])).await.unwrap();
    let report = sync_round(&a, &remote, &RoundOptions::default()).await.unwrap();
    assert_eq!((report.pushed, report.pushed_new), (3, 3), "{report:?}");
    let ops = global_ops(&s, &doc.to_string()).await;
    let authors: Vec<(Option<String>, bool)> = ops
        .iter()
        .map(|o| {
            let a: Action = serde_json::from_value(o["action"].clone()).unwrap();
            (a.replica.clone(), a.signer.is_some())
        })
        .collect();
    assert_eq!(
        authors,
        vec![(Some(legacy.to_owned()), false), (Some(a.id().to_owned()), true)],
        "the old action as the former replica, unsigned; the new one signed"
    );
    // Nothing is pushed twice.
    let again = sync_round(&a, &remote, &RoundOptions::default()).await.unwrap();
    assert_eq!(again.pushed, 0, "{again:?}");
    s.stop().await;
}
