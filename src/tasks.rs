//! Background work, and the two rules that keep it orderly.
//!
//! **Every background task belongs to a task set.** A task started with bare
//! `tokio::spawn` belongs to nobody: shutdown cannot wait for it (a credentials file
//! half-written, a usage file not saved) and a reload cannot stop it (a watcher left
//! running for an account that was removed). So tasks are started through a [`Tasks`]
//! (or a [`JoinSet`] that one owns), and `clippy.toml` refuses `tokio::spawn` with the
//! reason. Per-request work runs inside the request's own future, not in a task.
//!
//! Two kinds of task: most are stopped where they are at shutdown ([`Tasks::spawn`]: a
//! file watcher, a usage poll); a task whose work must not be cut in the middle (a
//! token refresh: cut after the token endpoint rotated the login, the new tokens would
//! be lost) is told to stop and waited for ([`Tasks::spawn_graceful`]): it watches
//! [`Tasks::stopping`] between two pieces of work.
//!
//! **Poisoned locks are recovered, not propagated.** Every `std::sync::Mutex` and
//! `RwLock` in Carpool guards plain data that is whole between any two statements (a
//! map, counters, a token state): no code holding one leaves it half-updated across a
//! call that could panic. A panic elsewhere while one was held therefore leaves
//! nothing to repair, and turning it into a second panic in every later request would
//! take the whole relay down for one bug. [`lock`], [`read`] and [`write`] take the
//! guard whatever the poison flag says; use them instead of `.lock().unwrap()`. Locks
//! are never held across an `.await`.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};

/// A set of background tasks that is stopped and waited for as one.
pub struct Tasks {
    set: Mutex<JoinSet<()>>,
    /// Tasks that finish their current piece of work when told to stop.
    graceful: Mutex<JoinSet<()>>,
    stop: watch::Sender<bool>,
}

impl Default for Tasks {
    fn default() -> Self {
        Tasks {
            set: Mutex::default(),
            graceful: Mutex::default(),
            stop: watch::Sender::new(false),
        }
    }
}

impl Tasks {
    pub fn new() -> Tasks {
        Tasks::default()
    }

    /// Starts `task`, which must end soon after [`Tasks::stopping`] completes; shutdown
    /// waits for it instead of cutting it.
    pub fn spawn_graceful<F>(&self, task: F) -> AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut set = lock(&self.graceful);
        while set.try_join_next().is_some() {}
        set.spawn(task)
    }

    /// Completes when shutdown begins (at once if it has).
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.subscribe();
        async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }
    }

    /// Starts `task` in this set (on the current tokio runtime). The handle stops it
    /// early, e.g. when a reload removes what it works for.
    pub fn spawn<F>(&self, task: F) -> AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut set = lock(&self.set);
        // Finished tasks keep a slot until joined: reap them so the set stays the size
        // of what is running.
        while set.try_join_next().is_some() {}
        set.spawn(task)
    }

    /// Runs `f` with the set itself, for functions that start their task in a
    /// [`JoinSet`] they are given.
    pub fn with<R>(&self, f: impl FnOnce(&mut JoinSet<()>) -> R) -> R {
        let mut set = lock(&self.set);
        while set.try_join_next().is_some() {}
        f(&mut set)
    }

    /// How many tasks are running (or finished and not yet reaped).
    pub fn len(&self) -> usize {
        lock(&self.set).len() + lock(&self.graceful).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tells the graceful tasks to stop and waits for them, then stops every other task
    /// and waits until all have ended. Tasks spawned meanwhile are stopped too.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        loop {
            let mut graceful = std::mem::take(&mut *lock(&self.graceful));
            if graceful.is_empty() {
                break;
            }
            while graceful.join_next().await.is_some() {}
        }
        loop {
            let mut set = std::mem::take(&mut *lock(&self.set));
            if set.is_empty() {
                return;
            }
            set.shutdown().await;
        }
    }
}

/// Locks `mutex`, recovering it if a panic poisoned it (see the module documentation).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read-locks `lock`, recovering it if a panic poisoned it.
pub fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

/// Write-locks `lock`, recovering it if a panic poisoned it.
pub fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn shutdown_stops_every_task_and_waits_for_it() {
        let tasks = Tasks::new();
        let dropped = Arc::new(AtomicUsize::new(0));
        struct CountDrop(Arc<AtomicUsize>);
        impl Drop for CountDrop {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        for _ in 0..3 {
            let guard = CountDrop(dropped.clone());
            tasks.spawn(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            });
        }
        assert_eq!(tasks.len(), 3);
        tasks.shutdown().await;
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            3,
            "all stopped before it returned"
        );
        assert!(tasks.is_empty());
    }

    #[tokio::test]
    async fn graceful_tasks_finish_their_work_before_the_others_are_cut() {
        let tasks = Tasks::new();
        let finished = Arc::new(AtomicUsize::new(0));
        let stopping = tasks.stopping();
        let done = finished.clone();
        tasks.spawn_graceful(async move {
            stopping.await;
            // The piece of work under way when shutdown came.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            done.fetch_add(1, Ordering::SeqCst);
        });
        tasks.spawn(std::future::pending());
        tasks.shutdown().await;
        assert_eq!(finished.load(Ordering::SeqCst), 1, "waited for, not cut");
        assert!(tasks.is_empty());
        // After shutdown, `stopping` is already complete.
        tokio::time::timeout(std::time::Duration::from_secs(1), tasks.stopping())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn finished_tasks_are_reaped_and_a_handle_stops_one() {
        let tasks = Tasks::new();
        for _ in 0..10 {
            tasks.spawn(async {});
        }
        tokio::task::yield_now().await;
        let handle = tasks.spawn(std::future::pending());
        assert!(tasks.len() <= 2, "finished ones reaped: {}", tasks.len());
        handle.abort();
        tasks.shutdown().await;
        assert!(tasks.is_empty());
    }

    #[test]
    fn a_poisoned_lock_is_recovered_with_its_data() {
        let mutex = Arc::new(Mutex::new(7));
        let m = mutex.clone();
        let _ = std::thread::spawn(move || {
            let _guard = m.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(mutex.is_poisoned());
        assert_eq!(*lock(&mutex), 7);
    }
}
