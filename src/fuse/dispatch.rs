//! Running a request's work on the dispatch thread until it would wait.

use tokio::runtime::Handle;

/// See `FuseAdapter::run`.
pub(super) fn run_inline(runtime: &Handle, work: impl Future<Output = ()> + Send + 'static) {
    let _runtime = runtime.enter();
    let mut work = Box::pin(work);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        work.as_mut().poll(&mut context)
    }));
    match polled {
        Ok(std::task::Poll::Pending) => {
            runtime.spawn(work);
        }
        Ok(std::task::Poll::Ready(())) => {}
        Err(_) => log::error!("a request panicked; it fails with EIO and the mount goes on"),
    }
}

#[cfg(test)]
mod run_tests {
    use super::run_inline;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A request that panics, inline or after waiting, ends alone: the
    /// requests after it still run, on the dispatch thread and the runtime.
    #[test]
    fn a_panicking_request_does_not_stop_the_next_ones() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let handle = runtime.handle().clone();
        run_inline(&handle, async { panic!("inline") });
        run_inline(&handle, async {
            tokio::task::yield_now().await;
            panic!("on the runtime")
        });
        let (done, finished) = mpsc::channel();
        let inline = done.clone();
        run_inline(&handle, async move { inline.send("inline").unwrap() });
        run_inline(&handle, async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            done.send("waited").unwrap();
        });
        let mut seen: Vec<_> = (0..2)
            .map(|_| finished.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        seen.sort();
        assert_eq!(seen, ["inline", "waited"]);
    }
}
