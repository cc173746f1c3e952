//! Fork adoption: the process-wide store ([`Store::global`]) and what a forked
//! child does with the store it inherited from its parent (adopts every region
//! the parent had mapped, so attaching the parent's objects maps nothing).

use std::sync::{Arc, Mutex};

use shard_alloc::sys::process;
use shard_alloc::Options;

use super::registry::Attached;
use super::{lock, Store};
use crate::error::Result;
use crate::fork;

static GLOBAL: Mutex<Option<Arc<Store>>> = Mutex::new(None);

impl Store {
    /// The process-wide store, created on first use from `Options::from_env()`.
    ///
    /// In a forked child the parent's store is found here with another pid: the
    /// child gets a fresh store that *adopts* every region the parent had mapped
    /// (its own and those it attached), so attaching the parent's objects maps
    /// nothing. The parent's store is leaked on purpose: dropping it would free,
    /// seal or unlink the parent's regions (and unmap ranges that the child may
    /// since have reused). The fork gate ([`crate::fork`]) makes the snapshot of
    /// the parent's maps consistent.
    pub fn global() -> Result<Arc<Store>> {
        let _pass = fork::enter();
        let mut g = lock(&GLOBAL);
        let me = process::pid();
        if let Some(s) = g.as_ref() {
            if s.pid == me {
                return Ok(s.clone());
            }
        }
        let fresh = Store::with_options(Options::from_env()?)?;
        if let Some(parent) = g.take() {
            fresh.adopt(&parent);
            std::mem::forget(parent);
        }
        let s = Arc::new(fresh);
        *g = Some(s.clone());
        Ok(s)
    }

    /// Keeps every region `parent` had mapped (owned, attached, inherited)
    /// mapped in this store as inherited.
    fn adopt(&self, parent: &Store) {
        let mut inh = lock(&self.inherited);
        for (k, o) in lock(&parent.owned).iter() {
            inh.entry(k.region)
                .or_insert_with(|| Arc::new(Attached::own(o.block.region.clone())));
        }
        for (k, w) in lock(&parent.registry).iter() {
            if let Some(a) = w.upgrade() {
                inh.insert(*k, a);
            }
        }
        for (k, a) in lock(&parent.inherited).iter() {
            inh.entry(*k).or_insert_with(|| a.clone());
        }
    }
}
