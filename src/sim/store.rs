//! The object store: one ordered map per resource, one global resourceVersion counter (like
//! etcd), a bounded history of changes for watches that resume from a resourceVersion, and a
//! broadcast channel for live watches and the simulated controllers.
//!
//! A current object is kept as its JSON text (shared by the history and every watch that sends
//! it) and the few fields selectors read; readers get their own [`Obj`] over that text. All
//! methods take the lock briefly and never await.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

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

/// An object as a change or a reader sees it. Immutable; it holds its JSON tree, its JSON
/// text, or both, and computes the missing one at most once, and its [`Meta`] (what selectors
/// and watch routing read) without parsing when it came from the store.
///
/// The store itself keeps neither trees nor these: a current object is a [`Kept`] (its text
/// and its `Meta`), and every read hands out a fresh `Obj` over that text whose tree is parsed
/// on first use and dies with the reader. A 1.9 KB pod is ~14 KB as a `Value` (every small
/// map is a B-tree node), which at 100,000 pods was most of the simulator's memory.
#[derive(Debug)]
pub struct Obj {
    value: OnceLock<Value>,
    json: OnceLock<Bytes>,
    meta: OnceLock<Arc<Meta>>,
}

/// What is read of an object without its tree: where it lives, its labels, its controlling
/// owner, and the few facts a replica set counts its pods by (what watch routing, selectors,
/// the controllers' work queue and their reconciling read, for every pod, again and again).
#[derive(Debug)]
pub struct Meta {
    pub namespace: Box<str>,
    pub name: Box<str>,
    /// Sorted by key.
    labels: Box<[(Box<str>, Box<str>)]>,
    /// The controlling owner's kind, name and uid (see [`owner`]).
    owner: Option<[Box<str>; 3]>,
    pub created: Box<str>,
    /// See [`is_terminating`].
    pub terminating: bool,
    /// See [`is_ready`].
    pub ready: bool,
}

impl Meta {
    fn of(v: &Value) -> Meta {
        let mut labels: Vec<(Box<str>, Box<str>)> =
            labels_of(v).map(|(k, v)| (k.into(), v.into())).collect();
        labels.sort_unstable();
        Meta {
            namespace: meta_str(v, "namespace").into(),
            name: meta_str(v, "name").into(),
            labels: labels.into_boxed_slice(),
            owner: owner(v).map(|(kind, name, uid)| [kind.into(), name.into(), uid.into()]),
            created: meta_str(v, "creationTimestamp").into(),
            terminating: is_terminating(v),
            ready: is_ready(v),
        }
    }

    /// The controlling owner's kind, name and uid.
    pub fn owner(&self) -> Option<(&str, &str, &str)> {
        self.owner
            .as_ref()
            .map(|[k, n, u]| (k.as_ref(), n.as_ref(), u.as_ref()))
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.labels[i].1.as_ref())
    }

    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }
}

impl Obj {
    pub fn new(value: Value) -> Self {
        Obj {
            value: OnceLock::from(value),
            json: OnceLock::new(),
            meta: OnceLock::new(),
        }
    }

    /// An object known only by its JSON text (a past version kept in the history).
    fn from_json(json: Bytes) -> Self {
        Obj {
            value: OnceLock::new(),
            json: OnceLock::from(json),
            meta: OnceLock::new(),
        }
    }

    pub fn value(&self) -> &Value {
        self.value.get_or_init(|| {
            // The text was written by `json` from a tree, so it parses.
            self.json
                .get()
                .and_then(|j| serde_json::from_slice(j).ok())
                .unwrap_or(Value::Null)
        })
    }

    /// The tree if this object has it, else parsed from the text and not kept: for readers
    /// of objects that others share (the history's versions), whose trees must not pile up.
    pub fn tree(&self) -> Cow<'_, Value> {
        match (self.value.get(), self.json.get()) {
            (Some(v), _) => Cow::Borrowed(v),
            // The text was written by `json` from a tree, so it parses.
            (None, Some(j)) => Cow::Owned(serde_json::from_slice(j).unwrap_or(Value::Null)),
            (None, None) => Cow::Owned(Value::Null),
        }
    }

    /// The object as JSON text.
    pub fn json(&self) -> &Bytes {
        self.json.get_or_init(|| {
            // Serializing a Value cannot fail: its keys are strings.
            let text = serde_json::to_vec(self.value()).unwrap_or_default();
            // Exactly its length: this text is what the store keeps of every object.
            Bytes::from(text.into_boxed_slice())
        })
    }

    /// Whether this object holds a parsed tree (tests of what keeps trees).
    #[cfg(test)]
    pub(super) fn has_tree(&self) -> bool {
        self.value.get().is_some()
    }

    /// Its [`Meta`]: known without parsing when the store handed this object out or queued it
    /// as a change; otherwise read from the tree (parsed for it and not kept).
    pub fn meta(&self) -> &Arc<Meta> {
        self.meta.get_or_init(|| Arc::new(Meta::of(&self.tree())))
    }

    /// The same version as text only, sharing this one's text and [`Meta`] (when known), so
    /// that a watch resuming through the history routes and filters it without parsing.
    fn text_only(&self) -> Arc<Obj> {
        let copy = Obj::from_json(self.json().clone());
        if let Some(meta) = self.meta.get() {
            let _ = copy.meta.set(meta.clone());
        }
        Arc::new(copy)
    }
}

impl Deref for Obj {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.value()
    }
}

/// A current object as the store keeps it: its text (shared with the history and with what
/// watches send) and its [`Meta`]; never its tree. [`Kept::view`] is how it is read.
#[derive(Debug, Clone)]
struct Kept {
    json: Bytes,
    meta: Arc<Meta>,
}

impl Kept {
    fn of(obj: &Obj) -> Kept {
        Kept {
            json: obj.json().clone(),
            meta: obj.meta().clone(),
        }
    }

    /// A reader's own object over the kept text: its tree, once parsed, is the reader's.
    fn view(&self) -> Arc<Obj> {
        Arc::new(self.obj())
    }

    /// The same, unboxed: what a list's filter looks at (two reference counts, no allocation
    /// for the objects it rejects).
    fn obj(&self) -> Obj {
        Obj {
            value: OnceLock::new(),
            json: OnceLock::from(self.json.clone()),
            meta: OnceLock::from(self.meta.clone()),
        }
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

impl Change {
    /// The same change with its versions as text only (see [`Obj`]): what the history keeps.
    fn text_only(&self) -> Change {
        Change {
            rv: self.rv,
            res: self.res.clone(),
            kind: self.kind,
            obj: self.obj.text_only(),
            prev: self.prev.as_ref().map(|p| p.text_only()),
        }
    }

    /// What a retained change costs, roughly: its text and the bookkeeping around it. The
    /// previous version's text is not counted: it is the text of the entry before (shared),
    /// or, once that entry is dropped, one text per object.
    fn retained_bytes(&self) -> usize {
        const OVERHEAD: usize = 320;
        self.obj.json().len() + OVERHEAD
    }
}

/// One page of a list (see [`Store::list_page`]).
#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<Arc<Obj>>,
    /// The store's resourceVersion when the page was read.
    pub rv: u64,
    /// Where the next page resumes (after this key), when there may be more.
    pub next: Option<ObjKey>,
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
    tables: HashMap<ResId, BTreeMap<ObjKey, Kept>>,
    /// Past changes, oldest first, their versions as text only; `history_bytes` is what they
    /// retain (see [`Change::retained_bytes`]).
    history: VecDeque<Arc<Change>>,
    history_bytes: usize,
}

/// Called with every committed change, under the store's lock, in commit order.
pub type Observer = Box<dyn Fn(&Change) + Send + Sync>;

/// What a watch's selector pins down, so that a change is handed only to the watches it may
/// concern: with 1,000 watches of one deployment's pods each, handing every change to every
/// watch (to be filtered there) cost more than the rest of the simulation at 100,000 pods.
/// The watch still applies its whole selector; this only narrows who looks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WatchKey {
    /// Every change of the resource.
    All,
    /// Changes whose object, or its previous version, has this label value.
    Label(String, String),
    /// Changes of objects of this name.
    Name(String),
}

/// How many changes a watch may have waiting before it is told to re-list (410), the same
/// contract the real API server offers a slow watcher.
const WATCH_BACKLOG: usize = 1 << 16;

struct Sink {
    id: u64,
    ns: Option<String>,
    tx: mpsc::Sender<Arc<Change>>,
}

/// The watches of one resource, by what they pin.
#[derive(Default)]
struct Sinks {
    all: Vec<Sink>,
    by_label: HashMap<String, HashMap<String, Vec<Sink>>>,
    by_name: HashMap<String, Vec<Sink>>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    by_res: HashMap<ResId, Sinks>,
}

fn labels_of(o: &Value) -> impl Iterator<Item = (&str, &str)> {
    o.get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
}

/// Hands `c` to each sink of its namespace; drops the sinks that are gone or full (a full
/// one's watch then ends with 410 once it has sent what it holds).
fn deliver(sinks: &mut Vec<Sink>, c: &Arc<Change>) {
    let ns = &*c.obj.meta().namespace;
    sinks.retain(|s| {
        if s.ns.as_deref().is_some_and(|want| want != ns) {
            return true;
        }
        match s.tx.try_send(c.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_) | mpsc::error::TrySendError::Closed(_)) => false,
        }
    });
}

impl Registry {
    fn dispatch(&mut self, c: &Arc<Change>) {
        let Some(sinks) = self.by_res.get_mut(&c.res) else {
            return;
        };
        deliver(&mut sinks.all, c);
        if !sinks.by_name.is_empty() {
            if let Some(list) = sinks.by_name.get_mut(&*c.obj.meta().name) {
                deliver(list, c);
            }
        }
        if !sinks.by_label.is_empty() {
            // Each label value once, so that a watch pinned to a label both versions carry
            // gets the change once.
            let mut pairs: Vec<(&str, &str)> = c
                .obj
                .meta()
                .labels()
                .chain(c.prev.iter().flat_map(|p| p.meta().labels()))
                .collect();
            pairs.sort_unstable();
            pairs.dedup();
            for (k, v) in pairs {
                if let Some(list) = sinks.by_label.get_mut(k).and_then(|vs| vs.get_mut(v)) {
                    deliver(list, c);
                }
            }
        }
    }

    fn list_mut(&mut self, res: &ResId, key: &WatchKey) -> &mut Vec<Sink> {
        let sinks = self.by_res.entry(res.clone()).or_default();
        match key {
            WatchKey::All => &mut sinks.all,
            WatchKey::Label(k, v) => sinks
                .by_label
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default(),
            WatchKey::Name(n) => sinks.by_name.entry(n.clone()).or_default(),
        }
    }

    fn remove(&mut self, res: &ResId, key: &WatchKey, id: u64) {
        let Some(sinks) = self.by_res.get_mut(res) else {
            return;
        };
        match key {
            WatchKey::All => sinks.all.retain(|s| s.id != id),
            WatchKey::Label(k, v) => {
                if let Some(vs) = sinks.by_label.get_mut(k) {
                    if let Some(list) = vs.get_mut(v) {
                        list.retain(|s| s.id != id);
                        if list.is_empty() {
                            vs.remove(v);
                        }
                    }
                    if vs.is_empty() {
                        sinks.by_label.remove(k);
                    }
                }
            }
            WatchKey::Name(n) => {
                if let Some(list) = sinks.by_name.get_mut(n) {
                    list.retain(|s| s.id != id);
                    if list.is_empty() {
                        sinks.by_name.remove(n);
                    }
                }
            }
        }
    }
}

/// The live changes of one watch, from the moment it started; unregisters when dropped.
pub struct Subscription {
    rx: mpsc::Receiver<Arc<Change>>,
    registry: Arc<Mutex<Registry>>,
    res: ResId,
    key: WatchKey,
    id: u64,
}

/// What a subscription yields next.
pub enum Live {
    Change(Arc<Change>),
    /// It fell more than its backlog behind: the client must re-list.
    Lagged,
}

impl Subscription {
    pub async fn recv(&mut self) -> Live {
        match self.rx.recv().await {
            Some(c) => Live::Change(c),
            // The store drops a sink only when it is full (its receiver is here).
            None => Live::Lagged,
        }
    }

    /// Whether nothing is waiting to be sent.
    pub fn is_idle(&self) -> bool {
        self.rx.is_empty()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.res, &self.key, self.id);
    }
}

pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Change>>,
    history_cap: usize,
    history_bytes_cap: usize,
    observer: OnceLock<Observer>,
    /// Open watches, handed each change under the store's lock (so none is missed or repeated
    /// between a watch's start and its live stream).
    watches: Arc<Mutex<Registry>>,
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

pub fn is_terminating(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// Whether the object's `Ready` condition is `True` (pods, nodes).
pub fn is_ready(obj: &Value) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// The controlling owner reference (else the first one): (kind, name, uid).
pub fn owner(obj: &Value) -> Option<(&str, &str, &str)> {
    let refs = obj.pointer("/metadata/ownerReferences")?.as_array()?;
    let r = refs
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .or_else(|| refs.first())?;
    Some((
        r.get("kind")?.as_str()?,
        r.get("name")?.as_str()?,
        r.get("uid").and_then(Value::as_str).unwrap_or(""),
    ))
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

/// What the history may retain by default: at 100,000 pods a pod's creation alone makes four
/// versions of ~1.8 KB, so a count alone would not bound memory; 256 MiB keeps the last
/// ~120,000 changes of pods (a 10,000-pod kill and every replacement's steps make ~60,000).
pub const HISTORY_BYTES: usize = 256 << 20;

/// At most this many objects are examined for one page of a list with a `limit`: a page
/// whose selector matches few objects comes back short (possibly empty) with a `continue`,
/// so that no page costs more than this however large the resource is.
pub const PAGE_SCAN: usize = 10_000;

impl Store {
    pub fn new(history_cap: usize) -> Self {
        Self::with_history_bytes(history_cap, HISTORY_BYTES)
    }

    /// A store whose history keeps at most `history_cap` changes and about `history_bytes`
    /// bytes of them (the oldest are dropped first; a watch resuming before them gets 410).
    pub fn with_history_bytes(history_cap: usize, history_bytes: usize) -> Self {
        // Broadcast capacity bounds how far a slow watcher may fall behind before it is told
        // to re-list (410), which is the same contract the real API server offers.
        let (tx, _) = broadcast::channel(1 << 16);
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                tables: HashMap::new(),
                history: VecDeque::new(),
                history_bytes: 0,
            }),
            tx,
            history_cap,
            history_bytes_cap: history_bytes,
            observer: OnceLock::new(),
            watches: Arc::default(),
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

    /// The resourceVersion of the last change; every watch has been handed every change up to
    /// it that concerns it.
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
        // From here on the change is its text and Meta only, the same `Arc` for the history,
        // the watches and the controllers: a tree (~14 KB for a pod) queued behind a slow
        // reader, thousands of them during a load or a mass kill, was most of the memory.
        change.obj.meta();
        let change = Arc::new(change.text_only());
        inner.history_bytes += change.retained_bytes();
        inner.history.push_back(change.clone());
        while inner.history.len() > self.history_cap
            || (inner.history_bytes > self.history_bytes_cap && inner.history.len() > 1)
        {
            if let Some(old) = inner.history.pop_front() {
                inner.history_bytes -= old.retained_bytes();
            }
        }
        self.watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .dispatch(&change);
        // No receivers is fine: nobody watches yet.
        let _ = self.tx.send(change);
    }

    pub fn get(&self, res: &ResId, ns: &str, name: &str) -> Option<Arc<Obj>> {
        let inner = self.lock();
        inner
            .tables
            .get(res)?
            .get(&(ns.to_string(), name.to_string()))
            .map(Kept::view)
    }

    /// Objects of `res` in `ns` (all namespaces when `None`) that `keep` accepts, and the rv.
    pub fn list(
        &self,
        res: &ResId,
        ns: Option<&str>,
        mut keep: impl FnMut(&Obj) -> bool,
    ) -> (Vec<Arc<Obj>>, u64) {
        let inner = self.lock();
        let Some(table) = inner.tables.get(res) else {
            return (Vec::new(), inner.rv);
        };
        let items = match ns {
            None => table
                .values()
                .map(Kept::obj)
                .filter(|o| keep(o))
                .map(Arc::new)
                .collect(),
            Some(ns) => table
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, o)| o.obj())
                .filter(|o| keep(o))
                .map(Arc::new)
                .collect(),
        };
        (items, inner.rv)
    }

    /// One page of the objects of `res` in `ns` (all namespaces when `None`) that `keep`
    /// accepts, in key order, starting after `after`: at most `limit` objects (all when 0).
    /// With a limit, at most `max(limit, PAGE_SCAN)` objects are examined, so a page costs
    /// O(page) however many objects there are. `next` says where the next page resumes: after
    /// this page's last item when another match follows, after the last object examined when
    /// the budget ran out first (a selective page may come back short, even empty, but always
    /// moves forward), and `None` at the end.
    pub fn list_page(
        &self,
        res: &ResId,
        ns: Option<&str>,
        after: Option<&ObjKey>,
        limit: usize,
        mut keep: impl FnMut(&Obj) -> bool,
    ) -> ListPage {
        use std::ops::Bound;
        let inner = self.lock();
        let rv = inner.rv;
        let Some(table) = inner.tables.get(res) else {
            return ListPage {
                items: Vec::new(),
                rv,
                next: None,
            };
        };
        let lower = match (after, ns) {
            (Some(after), _) => Bound::Excluded(after.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let mut range = table
            .range((lower, Bound::Unbounded))
            .take_while(|((n, _), _)| ns.is_none_or(|ns| ns == n))
            .peekable();
        let scan = if limit == 0 {
            usize::MAX
        } else {
            limit.max(PAGE_SCAN)
        };
        let mut items = Vec::new();
        let (mut last_examined, mut last_taken) = (None, None);
        let mut scanned = 0;
        let next = loop {
            if scanned == scan {
                // Out of budget: resume after what was examined (none of the rest matched).
                break range.peek().and(last_examined);
            }
            let Some((key, kept)) = range.next() else {
                break None;
            };
            scanned += 1;
            let obj = kept.obj();
            if keep(&obj) {
                if limit != 0 && items.len() == limit {
                    // A full page looks ahead for one more match, so that the last page
                    // says it is the last; the next page starts after this page's last item.
                    break last_taken;
                }
                items.push(Arc::new(obj));
                last_taken = Some(key);
            }
            last_examined = Some(key);
        }
        .cloned();
        ListPage { items, rv, next }
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
            .map(|(_, o)| o.view())
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
            .insert(key, Kept::of(&obj));
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
            .map(Kept::view)
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
            .insert(key, Kept::of(&obj));
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
        let prev = inner.tables.get(res)?.get(&key)?.view();
        let mut obj = prev.tree().into_owned();
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
            .insert(key, Kept::of(&obj));
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
            if meta_str(&table.get(&key)?.view(), "uid") != uid {
                return None;
            }
        }
        let prev = table.remove(&key)?.view();
        inner.rv += 1;
        let rv = inner.rv;
        let mut obj = prev.tree().into_owned();
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
        key: WatchKey,
    ) -> Result<(WatchStart, Subscription), StoreError> {
        let inner = self.lock();
        let subscribe = || {
            let (tx, rx) = mpsc::channel(WATCH_BACKLOG);
            let mut reg = self.watches.lock().unwrap_or_else(|p| p.into_inner());
            reg.next_id += 1;
            let id = reg.next_id;
            reg.list_mut(res, &key).push(Sink {
                id,
                ns: ns.map(str::to_string),
                tx,
            });
            Subscription {
                rx,
                registry: self.watches.clone(),
                res: res.clone(),
                key: key.clone(),
                id,
            }
        };
        match since {
            None => {
                let items = match inner.tables.get(res) {
                    None => Vec::new(),
                    Some(t) => t
                        .iter()
                        .filter(|((n, _), _)| ns.is_none_or(|ns| ns == n))
                        .map(|(_, o)| o.view())
                        .collect(),
                };
                Ok((WatchStart::Snapshot(items, inner.rv), subscribe()))
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
                // Copies (sharing text and Meta), so that a reader parsing a version does not
                // grow the history.
                let backlog = inner
                    .history
                    .range(first..)
                    .filter(|c| &c.res == res)
                    .map(|c| Arc::new(c.text_only()))
                    .collect();
                Ok((WatchStart::Backlog(backlog), subscribe()))
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
            s.watch(&res, None, Some(rv), WatchKey::All),
            Err(StoreError::Gone { .. })
        ));
        let cur = s.current_rv();
        assert!(s.watch(&res, None, Some(cur), WatchKey::All).is_ok());
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
        let Ok((WatchStart::Backlog(changes), _)) =
            s.watch(&pods, None, Some(since), WatchKey::All)
        else {
            panic!("expected a backlog");
        };
        let names: Vec<&str> = changes.iter().map(|c| meta_str(&c.obj, "name")).collect();
        assert_eq!(names, ["p5", "p6", "p7", "p8", "p9"]);
        assert!(changes.iter().all(|c| c.rv > since));
    }

    #[test]
    fn pages_resume_after_their_last_key_and_examine_a_bounded_number_of_objects() {
        let s = Store::new(100);
        let res = ResId::new("", "pods");
        let n = 2 * PAGE_SCAN + 5;
        for i in 0..n {
            let mut p = pod(&format!("p{i:06}"));
            if i % 1000 == 999 {
                p["metadata"]["labels"] = json!({"rare": "yes"});
            }
            s.create(&res, p).unwrap();
        }
        let rare = |o: &Value| o.pointer("/metadata/labels/rare").is_some();
        // A selective page examines at most PAGE_SCAN objects, and so may come back short,
        // but its continue key moves forward; following the keys examines each object once.
        let mut after = None;
        let mut examined = 0;
        let mut found = Vec::new();
        let mut pages = 0;
        loop {
            let mut calls = 0;
            let page = s.list_page(&res, Some("a"), after.as_ref(), 50, |o| {
                calls += 1;
                rare(o)
            });
            pages += 1;
            assert!(calls <= PAGE_SCAN, "one page examined {calls} objects");
            examined += calls;
            found.extend(page.items.iter().map(|o| meta_str(o, "name").to_string()));
            match page.next {
                Some(k) => {
                    assert!(after.as_ref().is_none_or(|a| k > *a), "no progress");
                    after = Some(k);
                }
                None => break,
            }
        }
        assert_eq!(examined, n);
        assert_eq!(pages, 3);
        let want: Vec<String> = (0..n)
            .filter(|i| i % 1000 == 999)
            .map(|i| format!("p{i:06}"))
            .collect();
        assert_eq!(found, want);
        // Unselective pages are exactly `limit` long; the last has no continue key.
        let first = s.list_page(&res, None, None, 7, |_| true);
        assert_eq!(first.items.len(), 7);
        assert_eq!(first.next, Some(("a".to_string(), "p000006".to_string())));
        let last = s.list_page(
            &res,
            None,
            Some(&("a".into(), format!("p{:06}", n - 3))),
            7,
            |_| true,
        );
        assert_eq!(last.items.len(), 2);
        assert_eq!(last.next, None);
        // Another namespace, or none at all, is an empty page.
        assert!(s
            .list_page(&res, Some("b"), None, 7, |_| true)
            .items
            .is_empty());
        let none = s.list_page(&ResId::new("", "secrets"), None, None, 7, |_| true);
        assert!(none.items.is_empty() && none.next.is_none());
    }

    #[test]
    fn the_history_is_bounded_by_bytes_and_keeps_versions_as_text() {
        let s = Store::with_history_bytes(1000, 10 * 1024);
        let res = ResId::new("", "pods");
        let mut first_rv = 0;
        for i in 0..100 {
            let p = s.create(&res, pod(&format!("p{i:03}"))).unwrap();
            if i == 0 {
                first_rv = rv_of(&p).unwrap();
            }
        }
        let inner = s.lock();
        assert!(inner.history.len() < 100);
        assert!(inner.history_bytes <= 10 * 1024);
        // Retained versions are text only until something reads them.
        assert!(inner.history.iter().all(|c| c.obj.value.get().is_none()));
        drop(inner);
        assert!(matches!(
            s.watch(&res, None, Some(first_rv), WatchKey::All),
            Err(StoreError::Gone { .. })
        ));
        // A resumed watch reads them as they were, and an update's previous version too.
        let since = s.current_rv();
        s.mutate(&res, "a", "p050", |o| {
            o["metadata"]["labels"] = json!({"x": "1"});
            true
        })
        .unwrap();
        let Ok((WatchStart::Backlog(changes), _)) = s.watch(&res, None, Some(since), WatchKey::All)
        else {
            panic!("expected a backlog");
        };
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].obj.pointer("/metadata/labels/x"),
            Some(&json!("1"))
        );
        let prev = changes[0].prev.as_ref().unwrap();
        assert_eq!(meta_str(prev, "name"), "p050");
        assert!(prev.pointer("/metadata/labels").is_none());
        // Reading a backlog does not turn the history's versions back into trees.
        assert!(s.lock().history.iter().all(|c| c.obj.value.get().is_none()));
    }

    #[test]
    fn live_changes_queue_as_text_and_route_without_parsing() {
        let s = Store::new(100);
        let res = ResId::new("", "pods");
        let mut rx = s.subscribe();
        let (_, mut live) = s
            .watch(&res, None, None, WatchKey::Label("app".into(), "a".into()))
            .unwrap();
        let labeled = json!({"metadata": {"namespace": "a", "name": "p1", "labels": {"app": "a"}}});
        let created = s.create(&res, labeled).unwrap();
        // The writer gets its tree back; what waits for slow readers is text.
        assert!(created.value.get().is_some());
        let queued = rx.try_recv().unwrap();
        assert!(queued.obj.value.get().is_none());
        let Live::Change(c) = futures::FutureExt::now_or_never(live.recv()).unwrap() else {
            panic!("expected the change");
        };
        assert!(Arc::ptr_eq(&c, &queued));
        // Routing reads Meta, not a tree (selectors: `select`'s tests).
        assert_eq!(c.obj.meta().label("app"), Some("a"));
        assert_eq!(&*c.obj.meta().name, "p1");
        assert!(c.obj.value.get().is_none());
        // What the store keeps is text too: a read hands out a tree of the reader's own.
        let read = s.get(&res, "a", "p1").unwrap();
        assert_eq!(meta_str(&read, "name"), "p1");
        let again = s.get(&res, "a", "p1").unwrap();
        assert!(again.value.get().is_none());
    }

    #[test]
    fn a_watch_is_handed_only_the_changes_its_key_may_select() {
        let s = Store::new(100);
        let res = ResId::new("", "pods");
        let labelled = |name: &str, app: &str| json!({"metadata": {"namespace": "a", "name": name, "labels": {"app": app}}});
        let start = |key: WatchKey, ns: Option<&str>| s.watch(&res, ns, None, key).unwrap().1;
        let mut web = start(WatchKey::Label("app".into(), "web".into()), None);
        let mut named = start(WatchKey::Name("p2".into()), None);
        let mut other_ns = start(WatchKey::All, Some("b"));
        let mut all = start(WatchKey::All, None);
        s.create(&res, labelled("p1", "web")).unwrap();
        s.create(&res, labelled("p2", "db")).unwrap();
        // p1 leaves app=web: the web watch still sees the change (to send DELETED).
        s.update(&res, labelled("p1", "db"), None).unwrap();
        s.update(&res, labelled("p1", "db"), None).unwrap();
        let drain = |sub: &mut Subscription| {
            let mut got = Vec::new();
            while let Ok(c) = sub.rx.try_recv() {
                got.push(format!("{}:{}", c.kind.as_str(), meta_str(&c.obj, "name")));
            }
            got
        };
        assert_eq!(drain(&mut web), ["ADDED:p1", "MODIFIED:p1"]);
        assert_eq!(drain(&mut named), ["ADDED:p2"]);
        assert!(drain(&mut other_ns).is_empty());
        assert_eq!(drain(&mut all).len(), 4);
        // A dropped watch is no longer registered.
        drop(web);
        let reg = s.watches.lock().unwrap();
        assert!(reg.by_res[&res].by_label.is_empty());
        assert_eq!(reg.by_res[&res].all.len(), 2);
    }
}
