//! The object store: one ordered map per resource, one global resourceVersion counter (like
//! etcd), a bounded history of changes for watches that resume from a resourceVersion, and a
//! broadcast channel for live watches and the simulated controllers.
//!
//! Objects are immutable `Arc<Obj>` once stored, so list and watch share them instead of
//! cloning the world per request. All methods take the lock briefly and never await.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use serde_json::Value;
use tokio::sync::broadcast;

/// Identifies a resource independent of its version: `("apps", "deployments")`, `("", "pods")`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResId {
    pub group: String,
    pub plural: String,
}

impl ResId {
    pub fn new(group: &str, plural: &str) -> Self {
        ResId {
            group: group.to_string(),
            plural: plural.to_string(),
        }
    }
}

/// A stored object. Immutable once stored, so its JSON encoding is computed at most once and
/// shared by every list and watch that sends it.
#[derive(Debug)]
pub struct Obj {
    value: Value,
    json: OnceLock<Bytes>,
}

impl Obj {
    pub fn new(value: Value) -> Self {
        Obj {
            value,
            json: OnceLock::new(),
        }
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The object as JSON text.
    pub fn json(&self) -> &Bytes {
        self.json.get_or_init(|| {
            // Serializing a Value cannot fail: its keys are strings.
            Bytes::from(serde_json::to_vec(&self.value).unwrap_or_default())
        })
    }
}

impl Deref for Obj {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.value
    }
}

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
pub type ObjKey = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "ADDED",
            ChangeKind::Modified => "MODIFIED",
            ChangeKind::Deleted => "DELETED",
        }
    }
}

/// One committed change. `prev` lets a selector-filtered watch turn a change that moves an
/// object out of (into) its selection into DELETED (ADDED), as the real API server does.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub res: ResId,
    pub kind: ChangeKind,
    pub obj: Arc<Obj>,
    pub prev: Option<Arc<Obj>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    AlreadyExists,
    #[error("not found")]
    NotFound,
    #[error("the object has been modified; please apply your changes to the latest version and try again")]
    Conflict,
    #[error("too old resource version: {requested} ({oldest})")]
    Gone { requested: u64, oldest: u64 },
}

struct Inner {
    rv: u64,
    tables: HashMap<ResId, BTreeMap<ObjKey, Arc<Obj>>>,
    history: VecDeque<Arc<Change>>,
}

/// Called with every committed change, under the store's lock, in commit order.
pub type Observer = Box<dyn Fn(&Change) + Send + Sync>;

pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Change>>,
    history_cap: usize,
    observer: OnceLock<Observer>,
}

/// What a watch starts from: a snapshot of matching objects, or the changes after an rv.
pub enum WatchStart {
    Snapshot(Vec<Arc<Obj>>, u64),
    Backlog(Vec<Arc<Change>>),
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn obj_key(obj: &Value) -> ObjKey {
    (
        meta_str(obj, "namespace").to_string(),
        meta_str(obj, "name").to_string(),
    )
}

fn stamp_rv(obj: &mut Value, rv: u64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

pub fn rv_of(obj: &Value) -> Option<u64> {
    meta_str(obj, "resourceVersion").parse().ok()
}

impl Store {
    pub fn new(history_cap: usize) -> Self {
        // Broadcast capacity bounds how far a slow watcher may fall behind before it is told
        // to re-list (410), which is the same contract the real API server offers.
        let (tx, _) = broadcast::channel(1 << 16);
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                tables: HashMap::new(),
                history: VecDeque::new(),
            }),
            tx,
            history_cap,
            observer: OnceLock::new(),
        }
    }

    /// Installs the one observer (the cluster's node and usage index): it sees every change
    /// synchronously, so what it derives never lags the store. It must not call the store.
    pub fn set_observer(&self, f: Observer) {
        let _ = self.observer.set(f);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a bug panicked mid-update; the maps are still consistent
        // because every mutation is a single insert/remove, so keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
    }

    #[cfg(test)]
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn resources(&self) -> Vec<ResId> {
        self.lock().tables.keys().cloned().collect()
    }

    fn commit(&self, inner: &mut Inner, change: Change) {
        if let Some(f) = self.observer.get() {
            f(&change);
        }
        let change = Arc::new(change);
        inner.history.push_back(change.clone());
        while inner.history.len() > self.history_cap {
            inner.history.pop_front();
        }
        // No receivers is fine: nobody watches yet.
        let _ = self.tx.send(change);
    }

    pub fn get(&self, res: &ResId, ns: &str, name: &str) -> Option<Arc<Obj>> {
        let inner = self.lock();
        inner
            .tables
            .get(res)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of `res` in `ns` (all namespaces when `None`) that `keep` accepts, and the rv.
    pub fn list(
        &self,
        res: &ResId,
        ns: Option<&str>,
        mut keep: impl FnMut(&Value) -> bool,
    ) -> (Vec<Arc<Obj>>, u64) {
        let inner = self.lock();
        let Some(table) = inner.tables.get(res) else {
            return (Vec::new(), inner.rv);
        };
        let items = match ns {
            None => table.values().filter(|o| keep(o)).cloned().collect(),
            Some(ns) => table
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, o)| o)
                .filter(|o| keep(o))
                .cloned()
                .collect(),
        };
        (items, inner.rv)
    }

    /// Objects of `res` in `ns` whose name starts with `prefix` (controllers find owned pods so).
    pub fn list_prefix(&self, res: &ResId, ns: &str, prefix: &str) -> Vec<Arc<Obj>> {
        let inner = self.lock();
        let Some(table) = inner.tables.get(res) else {
            return Vec::new();
        };
        table
            .range((ns.to_string(), prefix.to_string())..)
            .take_while(|((n, name), _)| n == ns && name.starts_with(prefix))
            .map(|(_, o)| o.clone())
            .collect()
    }

    pub fn create(&self, res: &ResId, mut obj: Value) -> Result<Arc<Obj>, StoreError> {
        let key = obj_key(&obj);
        let mut inner = self.lock();
        if inner.tables.get(res).is_some_and(|t| t.contains_key(&key)) {
            return Err(StoreError::AlreadyExists);
        }
        inner.rv += 1;
        let rv = inner.rv;
        stamp_rv(&mut obj, rv);
        let obj = Arc::new(Obj::new(obj));
        inner
            .tables
            .entry(res.clone())
            .or_default()
            .insert(key, obj.clone());
        self.commit(
            &mut inner,
            Change {
                rv,
                res: res.clone(),
                kind: ChangeKind::Added,
                obj: obj.clone(),
                prev: None,
            },
        );
        Ok(obj)
    }

    /// Replaces an object. With `expect_rv`, fails with Conflict unless it is the stored rv.
    pub fn update(
        &self,
        res: &ResId,
        mut obj: Value,
        expect_rv: Option<u64>,
    ) -> Result<Arc<Obj>, StoreError> {
        let key = obj_key(&obj);
        let mut inner = self.lock();
        let prev = inner
            .tables
            .get(res)
            .and_then(|t| t.get(&key))
            .cloned()
            .ok_or(StoreError::NotFound)?;
        if let Some(want) = expect_rv {
            if rv_of(&prev) != Some(want) {
                return Err(StoreError::Conflict);
            }
        }
        inner.rv += 1;
        let rv = inner.rv;
        stamp_rv(&mut obj, rv);
        let obj = Arc::new(Obj::new(obj));
        inner
            .tables
            .entry(res.clone())
            .or_default()
            .insert(key, obj.clone());
        self.commit(
            &mut inner,
            Change {
                rv,
                res: res.clone(),
                kind: ChangeKind::Modified,
                obj: obj.clone(),
                prev: Some(prev),
            },
        );
        Ok(obj)
    }

    /// Read-modify-write under the lock: `f` edits a copy and says whether it changed anything.
    /// Returns the stored object (new or unchanged), or None if it does not exist.
    pub fn mutate(
        &self,
        res: &ResId,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value) -> bool,
    ) -> Option<Arc<Obj>> {
        let key = (ns.to_string(), name.to_string());
        let mut inner = self.lock();
        let prev = inner.tables.get(res)?.get(&key)?.clone();
        let mut obj = prev.value().clone();
        if !f(&mut obj) {
            return Some(prev);
        }
        inner.rv += 1;
        let rv = inner.rv;
        stamp_rv(&mut obj, rv);
        let obj = Arc::new(Obj::new(obj));
        inner
            .tables
            .entry(res.clone())
            .or_default()
            .insert(key, obj.clone());
        self.commit(
            &mut inner,
            Change {
                rv,
                res: res.clone(),
                kind: ChangeKind::Modified,
                obj: obj.clone(),
                prev: Some(prev),
            },
        );
        Some(obj)
    }

    /// Removes an object; with `uid`, only if it is still that incarnation.
    pub fn remove(&self, res: &ResId, ns: &str, name: &str, uid: Option<&str>) -> Option<Arc<Obj>> {
        let key = (ns.to_string(), name.to_string());
        let mut inner = self.lock();
        let table = inner.tables.get_mut(res)?;
        if let Some(uid) = uid {
            if meta_str(table.get(&key)?, "uid") != uid {
                return None;
            }
        }
        let prev = table.remove(&key)?;
        inner.rv += 1;
        let rv = inner.rv;
        let mut obj = prev.value().clone();
        stamp_rv(&mut obj, rv);
        let obj = Arc::new(Obj::new(obj));
        self.commit(
            &mut inner,
            Change {
                rv,
                res: res.clone(),
                kind: ChangeKind::Deleted,
                obj: obj.clone(),
                prev: Some(prev),
            },
        );
        Some(obj)
    }

    /// Starts a watch: with `since`, the retained changes after it (410 if they were dropped);
    /// without, a snapshot. The receiver is subscribed under the same lock, so nothing is lost
    /// or repeated between the start and the live stream.
    pub fn watch(
        &self,
        res: &ResId,
        ns: Option<&str>,
        since: Option<u64>,
    ) -> Result<(WatchStart, broadcast::Receiver<Arc<Change>>), StoreError> {
        let inner = self.lock();
        let rx = self.tx.subscribe();
        match since {
            None => {
                let items = match inner.tables.get(res) {
                    None => Vec::new(),
                    Some(t) => t
                        .iter()
                        .filter(|((n, _), _)| ns.is_none_or(|ns| ns == n))
                        .map(|(_, o)| o.clone())
                        .collect(),
                };
                Ok((WatchStart::Snapshot(items, inner.rv), rx))
            }
            Some(since) => {
                let oldest = inner.history.front().map(|c| c.rv).unwrap_or(inner.rv + 1);
                // Changes in (since, oldest) were dropped from history: the client must re-list.
                if since + 1 < oldest && since < inner.rv {
                    return Err(StoreError::Gone {
                        requested: since,
                        oldest,
                    });
                }
                // History is in rv order: skip to `since` instead of scanning all of it under
                // the lock (every watcher that resumes from a list does this).
                let first = inner.history.partition_point(|c| c.rv <= since);
                let backlog = inner
                    .history
                    .range(first..)
                    .filter(|c| &c.res == res)
                    .cloned()
                    .collect();
                Ok((WatchStart::Backlog(backlog), rx))
            }
        }
    }
}

/// A resource the server knows: built in, or a custom resource seen in a request.
#[derive(Debug, Clone)]
pub struct ResInfo {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    pub short: Vec<String>,
    pub status: bool,
}

impl ResInfo {
    pub(super) fn id(&self) -> ResId {
        ResId::new(&self.group, &self.plural)
    }
    pub(super) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    pub(super) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str) -> Value {
        json!({"metadata": {"namespace": "a", "name": name}})
    }

    #[test]
    fn rv_conflict_and_history() {
        let s = Store::new(3);
        let res = ResId::new("", "pods");
        let p = s.create(&res, pod("x")).unwrap();
        let rv = rv_of(&p).unwrap();
        assert!(matches!(
            s.update(&res, pod("x"), Some(rv + 5)),
            Err(StoreError::Conflict)
        ));
        s.update(&res, pod("x"), Some(rv)).unwrap();
        assert!(matches!(
            s.create(&res, pod("x")),
            Err(StoreError::AlreadyExists)
        ));
        for i in 0..5 {
            s.create(&res, pod(&format!("p{i}"))).unwrap();
        }
        assert!(matches!(
            s.watch(&res, None, Some(rv)),
            Err(StoreError::Gone { .. })
        ));
        let cur = s.current_rv();
        assert!(s.watch(&res, None, Some(cur)).is_ok());
        assert_eq!(s.list_prefix(&res, "a", "p").len(), 5);
        assert_eq!(s.list(&res, Some("a"), |_| true).0.len(), 6);
    }

    #[test]
    fn a_watch_resumes_with_exactly_the_later_changes_of_its_resource() {
        let s = Store::new(100);
        let pods = ResId::new("", "pods");
        let cms = ResId::new("", "configmaps");
        for i in 0..10 {
            s.create(&pods, pod(&format!("p{i}"))).unwrap();
            s.create(&cms, pod(&format!("c{i}"))).unwrap();
        }
        let since = rv_of(&s.get(&pods, "a", "p4").unwrap()).unwrap();
        let Ok((WatchStart::Backlog(changes), _)) = s.watch(&pods, None, Some(since)) else {
            panic!("expected a backlog");
        };
        let names: Vec<&str> = changes.iter().map(|c| meta_str(&c.obj, "name")).collect();
        assert_eq!(names, ["p5", "p6", "p7", "p8", "p9"]);
        assert!(changes.iter().all(|c| c.rv > since));
    }
}
