//! Behaviour of the directory store: validation before writes, atomic files, hand edits,
//! versions and notifications.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keel_config::source::Input;
use keel_config::{Kind, Resource};

use super::*;

const VS_V1: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
";

const DR: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
";

fn resources(text: &str) -> Vec<Resource> {
    let input = Input {
        name: Arc::from("in.yaml"),
        text: text.to_string(),
    };
    read_for_apply(&[input], &ReadOptions::default())
        .expect("valid input")
        .0
}

fn open(dir: &Path) -> DirStore {
    DirStore::open(dir, DirStoreOptions::default())
        .expect("open")
        .0
}

fn vs_key() -> ResourceKey {
    ResourceKey::new(Kind::VirtualService, "default", "reviews")
}

/// Every file under `dir`, hidden ones included, relative to it.
fn tree(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("ls").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).expect("prefix").to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn apply_writes_one_file_per_resource_and_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    assert_eq!(store.snapshot().version, 0);
    let report = store
        .apply(
            resources(&format!("{VS_V1}---\n{DR}")),
            WriteOptions::default(),
        )
        .expect("apply");
    assert_eq!(
        report.results.iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![ApplyOutcome::Created, ApplyOutcome::Created]
    );
    assert_eq!(report.version, 1);
    assert_eq!(
        tree(dir.path()),
        vec![
            PathBuf::from("default/destinationrules.networking.istio.io/reviews.yaml"),
            PathBuf::from("default/virtualservices.networking.istio.io/reviews.yaml"),
        ]
    );
    let text = std::fs::read_to_string(
        dir.path()
            .join("default/virtualservices.networking.istio.io/reviews.yaml"),
    )
    .expect("read");
    assert!(
        text.contains("  namespace: default\n  resourceVersion: \"1\"\n"),
        "{text}"
    );
    assert!(text.contains("  generation: 1\n"), "{text}");

    let snap = store.snapshot();
    let vs = snap.get(&vs_key()).expect("stored");
    assert_eq!((vs.resource_version, vs.generation), (1, 1));
    assert_eq!(vs.object["metadata"]["resourceVersion"], "1");

    // The same again changes nothing; a change bumps the version and the generation.
    let again = store
        .apply(resources(VS_V1), WriteOptions::default())
        .expect("apply");
    assert_eq!(again.results[0].1, ApplyOutcome::Unchanged);
    assert_eq!(store.snapshot().version, 1);
    let v2 = VS_V1.replace("subset: v1", "subset: v2");
    let changed = store
        .apply(resources(&v2), WriteOptions::default())
        .expect("apply");
    assert_eq!(changed.results[0].1, ApplyOutcome::Configured);
    let snap = store.snapshot();
    let vs = snap.get(&vs_key()).expect("stored");
    assert_eq!(
        (snap.version, vs.resource_version, vs.generation),
        (2, 2, 2)
    );
    assert_eq!(tree(dir.path()).len(), 2, "no temporary files left");

    // A dry run reports without writing.
    let v3 = VS_V1.replace("subset: v1", "subset: v3");
    let dry = store
        .apply(resources(&v3), WriteOptions { dry_run: true })
        .expect("dry run");
    assert_eq!(
        (dry.results[0].1, dry.version),
        (ApplyOutcome::Configured, 3)
    );
    assert_eq!(store.snapshot().version, 2);
}

#[test]
fn an_invalid_write_is_rejected_with_reasons_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .apply(resources(DR), WriteOptions::default())
        .expect("apply");
    let before = store.snapshot();
    let files = tree(dir.path());

    // The store validates again, whatever the caller checked: one bad resource stops all.
    let mut batch = keel_config::load_str(VS_V1, "ok.yaml", &Default::default()).resources;
    let bad_dr = DR.replace("host: reviews", "host: \"\"");
    batch.extend(keel_config::load_str(&bad_dr, "bad-dr.yaml", &Default::default()).resources);
    assert_eq!(batch.len(), 2);
    match store.apply(batch, WriteOptions::default()) {
        Err(StoreError::Rejected(diags)) => {
            let text: Vec<String> = diags.iter().map(ToString::to_string).collect();
            assert!(
                text.iter().any(|t| t.starts_with("bad-dr.yaml:5:")),
                "{text:?}"
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(store.snapshot(), before);
    assert_eq!(tree(dir.path()), files);
}

#[test]
fn hand_edits_are_picked_up_and_invalid_ones_keep_the_last_good_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let path = dir.path().join("mine.yaml");
    std::fs::write(&path, VS_V1).expect("write");
    let report = store.reload();
    assert_eq!(report.files_read, vec![PathBuf::from("mine.yaml")]);
    assert_eq!(report.changes.len(), 1);
    let v1 = store.get(&vs_key()).expect("picked up");
    assert_eq!(v1.path, PathBuf::from("mine.yaml"));

    // Invalid: reported with file and line, the last good content stays.
    std::fs::write(&path, VS_V1.replace("subset: v1", "subset: V_1")).expect("write");
    let report = store.reload();
    assert_eq!(
        report.rejected_files,
        vec![RejectedFile {
            path: PathBuf::from("mine.yaml"),
            kept_last_good: true
        }]
    );
    let msg = report.problems[0].to_string();
    assert!(
        msg.starts_with(&format!("{}:9:", path.display())) && msg.contains("subset"),
        "{msg}"
    );
    assert_eq!(store.get(&vs_key()), Some(v1.clone()));
    assert_eq!(store.problems().len(), 1);
    // Read once: the same invalid content is not reported again.
    assert!(store.reload().is_empty());

    // Fixed: the new content is in force, with a new version.
    std::fs::write(&path, VS_V1.replace("subset: v1", "subset: v2")).expect("write");
    let report = store.reload();
    assert!(report.rejected_files.is_empty() && store.problems().is_empty());
    let v2 = store.get(&vs_key()).expect("stored");
    assert_eq!(v2.resource_version, v1.resource_version + 1);
    assert_eq!(v2.generation, 2);

    // An apply of a hand-placed resource rewrites its own file.
    store
        .apply(resources(VS_V1), WriteOptions::default())
        .expect("apply");
    assert_eq!(tree(dir.path()), vec![PathBuf::from("mine.yaml")]);

    // Removed by hand: gone from the store.
    std::fs::remove_file(&path).expect("rm");
    let report = store.reload();
    assert_eq!(report.changes[0].kind, ChangeKind::Removed);
    assert!(store.snapshot().resources.is_empty());
}

#[test]
fn delete_removes_the_file_and_reports_what_was_absent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .apply(resources(VS_V1), WriteOptions::default())
        .expect("apply");
    let missing = ResourceKey::new(Kind::DestinationRule, "default", "reviews");
    let report = store
        .delete(&[vs_key(), missing.clone()], WriteOptions::default())
        .expect("delete");
    assert_eq!(
        report.results,
        vec![
            (vs_key(), DeleteOutcome::Deleted),
            (missing, DeleteOutcome::NotFound)
        ]
    );
    assert_eq!(report.version, 2);
    assert!(tree(dir.path()).is_empty());
    assert!(
        !dir.path().join("default").exists(),
        "empty directories pruned"
    );
    assert!(store.snapshot().resources.is_empty());
    let again = store
        .delete(&[vs_key()], WriteOptions::default())
        .expect("delete");
    assert_eq!(again.results[0].1, DeleteOutcome::NotFound);
    assert_eq!(again.version, 2);
}

#[test]
fn deleting_a_namespace_deletes_everything_in_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let text = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n{}---\n{}---\n{}",
        VS_V1.replace("name: reviews\n", "name: reviews\n  namespace: shop\n"),
        DR.replace("name: reviews}", "name: reviews, namespace: shop}"),
        VS_V1
    );
    store
        .apply(resources(&text), WriteOptions::default())
        .expect("apply");
    let ns = ResourceKey::new(Kind::Namespace, "", "shop");
    let dry = store
        .delete(std::slice::from_ref(&ns), WriteOptions { dry_run: true })
        .expect("dry run");
    assert_eq!(dry.results.len(), 3, "{:?}", dry.results);
    assert_eq!(
        store.snapshot().resources.len(),
        4,
        "a dry run changes nothing"
    );
    let report = store
        .delete(std::slice::from_ref(&ns), WriteOptions::default())
        .expect("delete");
    assert_eq!(
        report.results,
        vec![
            (ns, DeleteOutcome::Deleted),
            (
                ResourceKey::new(Kind::VirtualService, "shop", "reviews"),
                DeleteOutcome::Deleted
            ),
            (
                ResourceKey::new(Kind::DestinationRule, "shop", "reviews"),
                DeleteOutcome::Deleted
            ),
        ]
    );
    let left: Vec<ResourceKey> = store.snapshot().resources.keys().cloned().collect();
    assert_eq!(left, vec![vs_key()], "other namespaces keep theirs");
    assert!(!dir.path().join("shop").exists(), "its directory is gone");
}

#[tokio::test]
async fn subscribers_see_each_change_with_a_higher_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut rx = store.subscribe();
    let first = rx.borrow_and_update().clone();
    store
        .apply(resources(VS_V1), WriteOptions::default())
        .expect("apply");
    rx.changed().await.expect("notified");
    let second = rx.borrow_and_update().clone();
    assert!(second.version > first.version);
    let changes = second.changes_since(&first);
    assert_eq!(changes, vec![Change::new(&vs_key(), ChangeKind::Added)]);

    // Two changes before the subscriber looks: it sees the latest, and the diff covers both.
    store
        .apply(resources(DR), WriteOptions::default())
        .expect("apply");
    store
        .delete(&[vs_key()], WriteOptions::default())
        .expect("delete");
    rx.changed().await.expect("notified");
    let third = rx.borrow_and_update().clone();
    assert_eq!(third.version, second.version + 2);
    let kinds: Vec<ChangeKind> = third
        .changes_since(&second)
        .into_iter()
        .map(|c| c.kind)
        .collect();
    // In key order: kinds in the order Keel lists them (VirtualService first).
    assert_eq!(kinds, vec![ChangeKind::Removed, ChangeKind::Added]);
    // An apply that changes nothing doesn't wake anyone.
    store
        .apply(resources(DR), WriteOptions::default())
        .expect("apply");
    assert!(!rx.has_changed().expect("open"));
}

#[test]
fn shared_files_are_edited_by_hand_and_duplicates_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bookinfo.yaml"),
        format!("{VS_V1}---\n{DR}---\napiVersion: batch/v1\nkind: Job\nmetadata: {{name: j}}\n"),
    )
    .expect("write");
    let (store, report) = DirStore::open(dir.path(), DirStoreOptions::default()).expect("open");
    assert_eq!(report.resources, 2);
    assert_eq!(report.problems.len(), 1, "a note about the Job");
    match store.apply(
        resources(&VS_V1.replace("v1}", "v2}")),
        WriteOptions::default(),
    ) {
        Err(StoreError::Conflict(msg)) => {
            assert!(
                msg.contains("bookinfo.yaml together with other objects"),
                "{msg}"
            )
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        store.delete(&[vs_key()], WriteOptions::default()),
        Err(StoreError::Conflict(_))
    ));
    // The same resource in its own canonical file wins over the shared one.
    let canonical = dir
        .path()
        .join("default/virtualservices.networking.istio.io/reviews.yaml");
    std::fs::create_dir_all(canonical.parent().expect("parent")).expect("mkdir");
    std::fs::write(&canonical, VS_V1.replace("v1}", "v3}")).expect("write");
    let report = store.reload();
    assert!(
        report
            .problems
            .iter()
            .any(|d| d.file.ends_with("bookinfo.yaml") && d.message.contains("also defined in")),
        "{:?}",
        report.problems
    );
    let vs = store.get(&vs_key()).expect("stored");
    assert_eq!(
        vs.object["spec"]["http"][0]["route"][0]["destination"]["subset"],
        "v3"
    );
}

#[test]
fn versions_survive_a_restart_and_crash_leftovers_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        store
            .apply(resources(VS_V1), WriteOptions::default())
            .expect("apply");
        store
            .apply(
                resources(&VS_V1.replace("v1}", "v2}")),
                WriteOptions::default(),
            )
            .expect("apply");
    }
    let leftover = dir
        .path()
        .join("default/virtualservices.networking.istio.io/.reviews.yaml.tmp-1-1");
    std::fs::write(&leftover, "half a fi").expect("write");
    let (store, report) = DirStore::open(dir.path(), DirStoreOptions::default()).expect("open");
    assert!(!leftover.exists());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let vs = store.get(&vs_key()).expect("stored");
    assert_eq!((vs.resource_version, vs.generation), (2, 2));
    assert!(store.snapshot().version > 2);
    let created = &vs.created;
    assert!(crate::time::parse_rfc3339(created).is_some(), "{created}");
}

#[test]
fn the_watcher_picks_up_edits_by_hand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(dir.path()));
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = store
        .watch(move |report| {
            let _ = tx.send(report.clone());
        })
        .expect("watch");
    std::fs::create_dir_all(dir.path().join("team")).expect("mkdir");
    std::fs::write(dir.path().join("team/vs.yaml"), VS_V1).expect("write");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.get(&vs_key()).is_none() {
        assert!(std::time::Instant::now() < deadline, "edit not picked up");
        let _ = rx.recv_timeout(Duration::from_millis(100));
    }
    // Our own writes are seen by the watcher too, and are not news.
    store
        .apply(resources(DR), WriteOptions::default())
        .expect("apply");
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(report) = rx.try_recv() {
        assert!(
            report.files_read.iter().all(|p| p.ends_with("vs.yaml")),
            "{report:?}"
        );
    }
    drop(handle);
}
