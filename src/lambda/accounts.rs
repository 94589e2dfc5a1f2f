//! The accounts' context for the alerts the door tells: names, OU paths and tags, from the rule
//! files' `accounts:` and, where the function may read it, AWS Organizations
//! (`ACCOUNT_CONTEXT=organizations`, through `ORG_READ_ROLE_ARN` when set), plus IAM Identity
//! Center shortcut links (`SSO_START_URL`, `SSO_PERMISSION_SET`).
//!
//! Enrichment never holds an alert back and never fails a delivery: an account it cannot learn
//! about is named by its id. Organizations is asked once per account per `ACCOUNT_CACHE_TTL`
//! (the account list a page of 20 at a time, then each new account's OU path and tags), never
//! once per alert; kept in memory for the instance's life and, with the state table, there for
//! the next cold start. A fault (AccessDenied, throttling) is logged once, and Organizations is
//! left alone for five minutes before it is asked again.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::ports::{AccountCache, Organizations};
use crate::alert::context::{AccountInfo, Sso};
use crate::alert::Alert;

/// Where the accounts' context comes from, besides the rule files.
#[async_trait]
pub trait AccountDirectory: Send + Sync {
    /// What is known of these accounts; an account it cannot learn about is left out.
    async fn lookup(&self, ids: &[String]) -> HashMap<String, AccountInfo>;
}

/// What the door adds to the alerts it tells (besides the rule files' `accounts:`, which it is
/// given with the rule set in force).
#[derive(Default, Clone)]
pub struct Context {
    pub directory: Option<Arc<dyn AccountDirectory>>,
    pub sso: Option<Sso>,
}

impl Context {
    /// The alerts with their accounts' context (the rule files' `accounts:` winning over the
    /// directory's); one directory lookup for all of them.
    pub async fn enrich(
        &self,
        alerts: Vec<Alert>,
        accounts: &BTreeMap<String, AccountInfo>,
    ) -> Vec<Alert> {
        if (accounts.is_empty() && self.directory.is_none() && self.sso.is_none())
            || alerts.is_empty()
        {
            return alerts;
        }
        let mut ids: Vec<String> = alerts
            .iter()
            .filter_map(|a| a.event.account.clone())
            .collect();
        ids.sort();
        ids.dedup();
        let found = match &self.directory {
            Some(d) => d.lookup(&ids).await,
            None => HashMap::new(),
        };
        alerts
            .into_iter()
            .map(|alert| {
                let id = alert.event.account.clone().unwrap_or_default();
                let info = match (accounts.get(&id), found.get(&id)) {
                    (Some(mine), Some(org)) => Some(mine.clone().or(org)),
                    (Some(mine), None) => Some(mine.clone()),
                    (None, Some(org)) => Some(org.clone()),
                    (None, None) => None,
                };
                alert.with_account(info, self.sso.as_ref())
            })
            .collect()
    }
}

/// The seconds an account's context is kept before Organizations is asked again.
pub const DEFAULT_TTL: u64 = 3600;
/// After a fault, Organizations is left alone this long.
pub const BACKOFF_SECS: u64 = 300;

struct Memo {
    /// Account id → (context, fetched at).
    accounts: HashMap<String, (AccountInfo, u64)>,
    /// Names from ListAccounts, and when they were listed.
    names: Option<(HashMap<String, String>, u64)>,
    /// OU id → (name, parent id, parent is root).
    ous: HashMap<String, (String, String, bool)>,
    /// Organizations is not asked before this (after a fault).
    quiet_until: u64,
    warned: bool,
}

/// The directory over AWS Organizations, with its memory (and an optional persistent cache).
pub struct OrgDirectory {
    org: Box<dyn Organizations>,
    cache: Option<Arc<dyn AccountCache>>,
    ttl: u64,
    memo: Mutex<Memo>,
    clock: fn() -> u64,
    /// Calls made to Organizations, and faults met.
    calls: AtomicU64,
    faults: AtomicU64,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl OrgDirectory {
    pub fn new(org: Box<dyn Organizations>, ttl: u64) -> Self {
        OrgDirectory {
            org,
            cache: None,
            ttl,
            memo: Mutex::new(Memo {
                accounts: HashMap::new(),
                names: None,
                ous: HashMap::new(),
                quiet_until: 0,
                warned: false,
            }),
            clock: now,
            calls: AtomicU64::new(0),
            faults: AtomicU64::new(0),
        }
    }

    /// Reads and keeps accounts' context in this cache too (the state table).
    pub fn with_cache(mut self, cache: Arc<dyn AccountCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Calls made to Organizations so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Faults met so far (each leaves Organizations alone for a while).
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    fn fault(&self, what: &str, error: &str) {
        self.faults.fetch_add(1, Ordering::Relaxed);
        let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        memo.quiet_until = (self.clock)() + BACKOFF_SECS;
        if !memo.warned {
            memo.warned = true;
            tracing::warn!(
                error = %error,
                "AWS Organizations could not be read ({what}): alerts name accounts by id \
                 until it can (ACCOUNT_CONTEXT, ORG_READ_ROLE_ARN; the role needs \
                 organizations:ListAccounts, ListParents, DescribeOrganizationalUnit and \
                 ListTagsForResource); asked again in {BACKOFF_SECS} s"
            );
        }
    }

    async fn call<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, String>>,
    ) -> Option<T> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match f.await {
            Ok(v) => Some(v),
            Err(e) => {
                self.fault(what, &e);
                None
            }
        }
    }

    /// The OU path of an account, root first, from the memo of OUs where it can.
    async fn ou_path(&self, account: &str) -> Option<Vec<String>> {
        let (mut at, mut root) = self.call("ListParents", self.org.parent(account)).await?;
        let mut path = Vec::new();
        for _ in 0..6 {
            if root {
                path.reverse();
                return Some(path);
            }
            let known = self
                .memo
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .ous
                .get(&at)
                .cloned();
            let (name, parent, parent_root) = match known {
                Some(k) => k,
                None => {
                    let name = self
                        .call("DescribeOrganizationalUnit", self.org.ou_name(&at))
                        .await?;
                    let (parent, parent_root) =
                        self.call("ListParents", self.org.parent(&at)).await?;
                    self.memo
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .ous
                        .insert(at.clone(), (name.clone(), parent.clone(), parent_root));
                    (name, parent, parent_root)
                }
            };
            path.push(name);
            at = parent;
            root = parent_root;
        }
        path.reverse();
        Some(path)
    }
}

#[async_trait]
impl AccountDirectory for OrgDirectory {
    async fn lookup(&self, ids: &[String]) -> HashMap<String, AccountInfo> {
        let now = (self.clock)();
        let mut out = HashMap::new();
        let mut missing: Vec<String> = Vec::new();
        {
            let memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
            for id in ids {
                match memo.accounts.get(id) {
                    Some((info, at)) if now < at + self.ttl => {
                        out.insert(id.clone(), info.clone());
                    }
                    _ => missing.push(id.clone()),
                }
            }
        }
        if missing.is_empty() {
            return out;
        }
        if let Some(cache) = &self.cache {
            let cached = cache.get(&missing, now).await;
            let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
            for (id, info) in cached {
                memo.accounts.insert(id.clone(), (info.clone(), now));
                out.insert(id, info);
            }
            missing.retain(|id| !out.contains_key(id));
        }
        if missing.is_empty() {
            return out;
        }
        let quiet = self
            .memo
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .quiet_until;
        if now < quiet {
            return out;
        }
        // The names: one listing per TTL for every account.
        let listed = {
            let memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
            memo.names
                .as_ref()
                .filter(|(_, at)| now < at + self.ttl)
                .map(|(n, _)| n.clone())
        };
        let names = match listed {
            Some(n) => n,
            None => match self.call("ListAccounts", self.org.accounts()).await {
                Some(list) => {
                    let names: HashMap<String, String> = list.into_iter().collect();
                    self.memo.lock().unwrap_or_else(|p| p.into_inner()).names =
                        Some((names.clone(), now));
                    names
                }
                None => return out,
            },
        };
        let mut fetched = HashMap::new();
        for id in missing {
            let Some(name) = names.get(&id) else {
                // Not an account of this organisation: nothing to ask.
                continue;
            };
            let Some(ou_path) = self.ou_path(&id).await else {
                break;
            };
            let Some(tags) = self.call("ListTagsForResource", self.org.tags(&id)).await else {
                break;
            };
            let info = AccountInfo {
                name: Some(name.clone()),
                ou_path,
                tags,
            };
            self.memo
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .accounts
                .insert(id.clone(), (info.clone(), now));
            fetched.insert(id.clone(), info.clone());
            out.insert(id, info);
        }
        if let (Some(cache), false) = (&self.cache, fetched.is_empty()) {
            cache.put(&fetched, now + self.ttl).await;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// An organisation in memory: Root → Prod → Payments (222…), Root → Sandbox (333…).
    struct Fake {
        calls: Arc<AtomicUsize>,
        fail: bool,
    }

    #[async_trait]
    impl Organizations for Fake {
        async fn accounts(&self) -> Result<Vec<(String, String)>, String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                return Err("ThrottlingException: Rate exceeded".into());
            }
            Ok(vec![
                ("222222222222".into(), "payments-prod".into()),
                ("333333333333".into(), "sandbox".into()),
            ])
        }
        async fn parent(&self, child: &str) -> Result<(String, bool), String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(match child {
                "222222222222" => ("ou-payments".into(), false),
                "ou-payments" => ("ou-prod".into(), false),
                "333333333333" => ("ou-sandbox".into(), false),
                _ => ("r-root".into(), true),
            })
        }
        async fn ou_name(&self, ou: &str) -> Result<String, String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(match ou {
                "ou-payments" => "Payments",
                "ou-prod" => "Prod",
                _ => "Sandbox",
            }
            .into())
        }
        async fn tags(&self, account: &str) -> Result<BTreeMap<String, String>, String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok([("team".to_owned(), format!("team-{}", &account[..1]))].into())
        }
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn organizations_is_asked_once_per_account_and_ou() {
        let calls = Arc::new(AtomicUsize::new(0));
        let d = OrgDirectory::new(
            Box::new(Fake {
                calls: calls.clone(),
                fail: false,
            }),
            DEFAULT_TTL,
        );
        let found = d
            .lookup(&ids(&["222222222222", "333333333333", "999999999999"]))
            .await;
        let p = &found["222222222222"];
        assert_eq!(p.name.as_deref(), Some("payments-prod"));
        assert_eq!(p.ou().as_deref(), Some("Root/Prod/Payments"));
        assert_eq!(p.tags["team"], "team-2");
        assert_eq!(found["333333333333"].ou().as_deref(), Some("Root/Sandbox"));
        assert!(
            !found.contains_key("999999999999"),
            "not of the organisation"
        );
        // ListAccounts 1; 222: ListParents, Describe+ListParents for Payments and for Prod,
        // tags; 333: ListParents, Describe+ListParents for Sandbox, tags.
        assert_eq!(calls.load(Ordering::SeqCst), 1 + 6 + 4);
        let again = d.lookup(&ids(&["222222222222", "333333333333"])).await;
        assert_eq!(again.len(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 11, "answered from memory");
    }

    #[tokio::test]
    async fn a_fault_is_met_once_and_organizations_left_alone() {
        let calls = Arc::new(AtomicUsize::new(0));
        let d = OrgDirectory::new(
            Box::new(Fake {
                calls: calls.clone(),
                fail: true,
            }),
            DEFAULT_TTL,
        );
        for _ in 0..5 {
            assert!(d.lookup(&ids(&["222222222222"])).await.is_empty());
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "left alone after the fault"
        );
        assert_eq!(d.faults(), 1);
    }
}
