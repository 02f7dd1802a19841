//! [`ReleasableStore`]: a text encoder's weights that can be dropped from memory before the
//! diffusion model runs (the planner's `TextEncoderPolicy::FreeBeforeDiffusion`) and are
//! loaded again from their file the next time a prompt is encoded, as ComfyUI reloads a model
//! it unloaded. Every clone of a `CLIP` and the model cache share one handle, so releasing it
//! drops the only strong reference to the weights.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use kiln_runtime::WeightStore;

use crate::error::NodesError;

/// Re-runs the original load of a store.
type Reload = dyn Fn() -> Result<WeightStore, NodesError> + Send + Sync;

/// A weight store that may be released and reloaded on demand.
pub struct ReleasableStore {
    label: String,
    loaded: Mutex<Option<Arc<WeightStore>>>,
    reload: Option<Box<Reload>>,
}

impl std::fmt::Debug for ReleasableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleasableStore")
            .field("label", &self.label)
            .field("loaded", &self.is_loaded())
            .field("releasable", &self.is_releasable())
            .finish()
    }
}

impl ReleasableStore {
    /// A loaded `store` that [`Self::release`] may drop; `reload` loads it again the same way.
    /// `label` names it in logs (`t5xxl of /models/x.safetensors`).
    pub fn reloadable(
        label: impl Into<String>,
        store: Arc<WeightStore>,
        reload: impl Fn() -> Result<WeightStore, NodesError> + Send + Sync + 'static,
    ) -> Self {
        ReleasableStore {
            label: label.into(),
            loaded: Mutex::new(Some(store)),
            reload: Some(Box::new(reload)),
        }
    }

    /// A store that stays loaded for as long as it is referenced (one that cannot be rebuilt
    /// from a file alone, such as LoRA-merged weights).
    pub fn fixed(label: impl Into<String>, store: Arc<WeightStore>) -> Self {
        ReleasableStore {
            label: label.into(),
            loaded: Mutex::new(Some(store)),
            reload: None,
        }
    }

    /// What the store is, for logs.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether the weights are in memory now.
    pub fn is_loaded(&self) -> bool {
        self.slot().is_some()
    }

    /// Whether [`Self::release`] can drop the weights.
    pub fn is_releasable(&self) -> bool {
        self.reload.is_some()
    }

    /// The weights, loading them again from their file when they were released.
    pub fn get(&self) -> Result<Arc<WeightStore>, NodesError> {
        // The lock is held while reloading so two encodes never load the file twice.
        let mut slot = self.slot();
        if let Some(store) = slot.as_ref() {
            return Ok(store.clone());
        }
        let store = match &self.reload {
            Some(reload) => {
                tracing::info!("reloading text encoder {}", self.label);
                Arc::new(reload()?)
            }
            None => {
                return Err(NodesError::MissingComponent {
                    path: std::path::PathBuf::from(&self.label),
                    what: "weights that were released and cannot be reloaded".to_owned(),
                })
            }
        };
        *slot = Some(store.clone());
        Ok(store)
    }

    /// Drops this handle's reference to the weights when they can be reloaded; true when it
    /// held them. Memory is returned once no encode in progress still uses them.
    pub fn release(&self) -> bool {
        if !self.is_releasable() {
            return false;
        }
        self.slot().take().is_some()
    }

    fn slot(&self) -> MutexGuard<'_, Option<Arc<WeightStore>>> {
        // A panic while another thread held the lock leaves the slot itself consistent.
        self.loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Weak handles of the text-encoder stores loaded so far, so sampling can release them without
/// keeping them alive.
#[derive(Debug, Default)]
pub struct TextEncoderTracker {
    stores: Mutex<Vec<Weak<ReleasableStore>>>,
}

impl TextEncoderTracker {
    /// Remembers `store`.
    pub fn track(&self, store: &Arc<ReleasableStore>) {
        let mut stores = self.lock();
        stores.retain(|weak| weak.strong_count() > 0);
        stores.push(Arc::downgrade(store));
    }

    /// Releases every live releasable store that is loaded; returns the labels of those
    /// released.
    pub fn release_all(&self) -> Vec<String> {
        let live: Vec<Arc<ReleasableStore>> = {
            let mut stores = self.lock();
            stores.retain(|weak| weak.strong_count() > 0);
            stores.iter().filter_map(Weak::upgrade).collect()
        };
        live.iter()
            .filter(|store| store.release())
            .map(|store| store.label().to_owned())
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Weak<ReleasableStore>>> {
        self.stores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn empty_store() -> WeightStore {
        WeightStore::from_tensors(
            kiln_detect::ComponentKind::T5xxl,
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
            BTreeMap::new(),
        )
        .unwrap()
    }

    #[test]
    fn release_drops_the_store_and_get_reloads_it() {
        let reloads = Arc::new(AtomicUsize::new(0));
        let counter = reloads.clone();
        let first = Arc::new(empty_store());
        let weak = Arc::downgrade(&first);
        let handle = Arc::new(ReleasableStore::reloadable(
            "t5xxl of x",
            first,
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(empty_store())
            },
        ));
        let tracker = TextEncoderTracker::default();
        tracker.track(&handle);
        assert_eq!(tracker.release_all(), ["t5xxl of x"]);
        assert!(weak.upgrade().is_none());
        assert!(!handle.is_loaded());
        assert!(tracker.release_all().is_empty(), "already released");
        handle.get().unwrap();
        handle.get().unwrap();
        assert_eq!(reloads.load(Ordering::SeqCst), 1);
        assert!(handle.is_loaded());
    }

    #[test]
    fn fixed_stores_stay_and_dead_handles_are_forgotten() {
        let tracker = TextEncoderTracker::default();
        let fixed = Arc::new(ReleasableStore::fixed("merged", Arc::new(empty_store())));
        tracker.track(&fixed);
        assert!(tracker.release_all().is_empty());
        assert!(fixed.is_loaded());
        drop(fixed);
        assert!(tracker.release_all().is_empty());
        assert!(tracker.lock().is_empty());
    }
}
