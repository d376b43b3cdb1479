#if canImport(Glibc)
import Glibc
#endif
import TributaryCore

/// A mutex and condition variable whose timed waits run on the monotonic clock.
///
/// Foundation's `NSCondition.wait(until:)` takes a wall-clock `Date`: a clock stepped back by
/// two hours turns a 5 ms wait into two hours. Here a deadline is a `MonotonicClock` reading.
final class MonotonicCondition: @unchecked Sendable {
    // @unchecked Sendable: the pthread objects are made for use from many threads; they are
    // allocated once, never moved, and destroyed in deinit.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
    func broadcast() { pthread_cond_broadcast(condition) }

    /// Waits until woken; call with the lock held.
    func wait() { pthread_cond_wait(condition, mutex) }

    /// Waits until woken or the monotonic clock reaches `deadline` (ns); false on time-out.
    /// Call with the lock held.
    func wait(untilNanoseconds deadline: UInt64) -> Bool {
        var time = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        return pthread_cond_timedwait(condition, mutex, &time) != ETIMEDOUT
    }
}
