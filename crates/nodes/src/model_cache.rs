//! [`ModelCache`]: loaded models kept between prompts, keyed by file and load options, so
//! `CheckpointLoaderSimple` in the next prompt reuses what this one loaded (ComfyUI keeps them
//! in `model_management.current_loaded_models`).

use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What a cached entry is keyed by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModelKey {
    /// The file loaded.
    pub path: PathBuf,
    /// What was loaded from it and how (`"checkpoint"`, `"vae"`, plus plan options).
    pub options: String,
}

impl ModelKey {
    /// A key for `path` loaded with `options`.
    pub fn new(path: &Path, options: impl Into<String>) -> Self {
        ModelKey {
            path: path.to_path_buf(),
            options: options.into(),
        }
    }
}

/// Loaded models by key. Only the prompt worker uses it; the lock is never held while loading.
#[derive(Default)]
pub struct ModelCache {
    entries: Mutex<HashMap<ModelKey, Arc<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for ModelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelCache")
            .field("entries", &self.len())
            .finish()
    }
}

impl ModelCache {
    /// The entry for `key` as `T`, loading (and caching) it with `load` when absent.
    pub fn get_or_load<T, E>(
        &self,
        key: ModelKey,
        load: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E>
    where
        T: Any + Send + Sync,
    {
        if let Some(found) = self
            .lookup(&key)
            .and_then(|entry| entry.downcast::<T>().ok())
        {
            return Ok(found);
        }
        let loaded = Arc::new(load()?);
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(key, loaded.clone() as Arc<dyn Any + Send + Sync>);
        }
        Ok(loaded)
    }

    fn lookup(&self, key: &ModelKey) -> Option<Arc<dyn Any + Send + Sync>> {
        self.entries.lock().ok()?.get(key).cloned()
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |entries| entries.len())
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry (`/free` with `unload_models`).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_once_per_key() {
        let cache = ModelCache::default();
        let mut loads = 0;
        let key = ModelKey::new(Path::new("/m/a.safetensors"), "checkpoint");
        for _ in 0..3 {
            let value = cache
                .get_or_load(key.clone(), || {
                    loads += 1;
                    Ok::<_, ()>(41_u32)
                })
                .unwrap();
            assert_eq!(*value, 41);
        }
        assert_eq!(loads, 1);
        let other = ModelKey::new(Path::new("/m/a.safetensors"), "vae");
        let failed = cache.get_or_load::<u32, _>(other, || Err("broken"));
        assert_eq!(failed.unwrap_err(), "broken");
        assert_eq!(cache.len(), 1);
    }
}
