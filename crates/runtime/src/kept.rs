//! Forms of a component's weights that the layers above derive and keep while the component is
//! in use ([`crate::WeightStore::prepared`]): a weight rounded to bf16 and packed for the CPU
//! kernels' products, say, which would otherwise be redone on every sampling step. They live
//! from the first use in a run until the component's last [`crate::InUse`] guard drops, so an
//! idle component holds nothing extra; the store releases a mapped weight's own pages when its
//! kept form replaces them, so the two are not resident together. Kept forms are the process's
//! own memory, which the system cannot reclaim as it can a file's pages, so they are kept only
//! up to a budget set when the component goes into use (half the memory then available); past
//! it, forms are built per call as if nothing were kept.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

type Form = Arc<dyn Any + Send + Sync>;

/// The kept forms of one store, by tensor name, and how many guards hold it in use.
#[derive(Default)]
pub(crate) struct KeptForms {
    users: AtomicUsize,
    forms: Mutex<HashMap<String, Form>>,
    /// Bytes the kept forms may take in this use, and what they take.
    budget: AtomicU64,
    kept_bytes: AtomicU64,
}

impl fmt::Debug for KeptForms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeptForms")
            .field("users", &self.users.load(Ordering::Relaxed))
            .field("forms", &self.lock().len())
            .finish()
    }
}

/// What [`KeptForms::get_or_build`] did.
pub(crate) enum Kept<T> {
    /// Found from an earlier call.
    Found(Arc<T>),
    /// Built now and kept.
    Built(Arc<T>),
    /// Built now for this call alone (the component is not in use), or not buildable.
    Unkept(Option<Arc<T>>),
}

impl KeptForms {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Form>> {
        // A panic while holding the lock leaves the map whole (inserts and clears only).
        self.forms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One more guard holds the component in use; the first sets the bytes the kept forms may
    /// take until the last drops (`budget` is asked only then).
    pub(crate) fn begin_use(&self, budget: impl FnOnce() -> u64) {
        if self.users.fetch_add(1, Ordering::AcqRel) == 0 {
            self.budget.store(budget(), Ordering::Release);
        }
    }

    /// A guard dropped; the last one lets every kept form go.
    pub(crate) fn end_use(&self) {
        let previous = self
            .users
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |users| {
                Some(users.saturating_sub(1))
            })
            .unwrap_or(0);
        if previous <= 1 {
            // Taken out under the lock, dropped after it: freeing can take a while.
            let forms = std::mem::take(&mut *self.lock());
            self.kept_bytes.store(0, Ordering::Release);
            drop(forms);
        }
    }

    /// Whether a guard holds the component in use.
    pub(crate) fn in_use(&self) -> bool {
        self.users.load(Ordering::Acquire) > 0
    }

    /// The form kept under `name` if it is a `T`, else `build()`'s, kept while the component is
    /// in use if its `bytes` fit the budget. `build` runs without the lock held (it may take long
    /// and use the kernel pool); two racing builds keep the first.
    pub(crate) fn get_or_build<T: Any + Send + Sync>(
        &self,
        name: &str,
        build: impl FnOnce() -> Option<T>,
        bytes: impl FnOnce(&T) -> u64,
    ) -> Kept<T> {
        if !self.in_use() {
            return Kept::Unkept(build().map(Arc::new));
        }
        if let Some(found) = self.found::<T>(name) {
            return Kept::Found(found);
        }
        let Some(built) = build().map(Arc::new) else {
            return Kept::Unkept(None);
        };
        let size = bytes(&built);
        let mut forms = self.lock();
        if let Some(first) = forms
            .get(name)
            .cloned()
            .and_then(|f| f.downcast::<T>().ok())
        {
            return Kept::Found(first);
        }
        // Under the lock: the budget check and the insert are one step.
        let kept = self.kept_bytes.load(Ordering::Acquire);
        if kept.saturating_add(size) > self.budget.load(Ordering::Acquire) {
            return Kept::Unkept(Some(built));
        }
        self.kept_bytes.store(kept + size, Ordering::Release);
        forms.insert(name.to_string(), built.clone());
        Kept::Built(built)
    }

    fn found<T: Any + Send + Sync>(&self, name: &str) -> Option<Arc<T>> {
        let form = self.lock().get(name).cloned()?;
        form.downcast::<T>().ok()
    }

    /// Kept forms (for tests and reports).
    pub(crate) fn count(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_kept_only_while_in_use_and_dropped_with_the_last_guard() {
        let kept = KeptForms::default();
        assert!(matches!(
            kept.get_or_build("w", || Some(1u32), |_| 4),
            Kept::Unkept(Some(_))
        ));
        assert_eq!(kept.count(), 0);
        kept.begin_use(|| 100);
        kept.begin_use(|| panic!("only the first guard sets the budget"));
        assert!(matches!(kept.get_or_build("w", || Some(2u32), |_| 4), Kept::Built(v) if *v == 2));
        // Found: the builder does not run again.
        let found = kept.get_or_build("w", || -> Option<u32> { panic!("rebuilt") }, |_| 4);
        assert!(matches!(found, Kept::Found(v) if *v == 2));
        // Another type under the same name is never misread as the kept one: it replaces it.
        assert!(matches!(kept.get_or_build("w", || Some(3u64), |_| 8), Kept::Built(v) if *v == 3));
        assert_eq!(kept.count(), 1);
        kept.end_use();
        assert_eq!(kept.count(), 1, "an inner guard keeps the forms");
        kept.end_use();
        assert_eq!(kept.count(), 0, "the last guard lets them go");
        assert!(!kept.in_use());
    }

    #[test]
    fn a_failed_build_keeps_nothing() {
        let kept = KeptForms::default();
        kept.begin_use(|| 100);
        assert!(matches!(
            kept.get_or_build::<u32>("w", || None, |_| 4),
            Kept::Unkept(None)
        ));
        assert_eq!(kept.count(), 0);
    }

    #[test]
    fn forms_past_the_budget_are_built_per_call() {
        let kept = KeptForms::default();
        kept.begin_use(|| 10);
        assert!(matches!(
            kept.get_or_build("a", || Some(1u8), |_| 6),
            Kept::Built(_)
        ));
        assert!(
            matches!(kept.get_or_build("b", || Some(2u8), |_| 6), Kept::Unkept(Some(v)) if *v == 2)
        );
        assert!(matches!(
            kept.get_or_build("c", || Some(3u8), |_| 4),
            Kept::Built(_)
        ));
        assert_eq!(kept.count(), 2);
        kept.end_use();
        // The next use starts with its own budget and nothing kept.
        kept.begin_use(|| 6);
        assert!(matches!(
            kept.get_or_build("b", || Some(2u8), |_| 6),
            Kept::Built(_)
        ));
    }
}
