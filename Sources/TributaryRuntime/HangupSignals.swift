import Dispatch
import Glibc

/// Each SIGHUP as an async sequence. The executables ignore SIGHUP from their first instruction
/// (`signal(SIGHUP, SIG_IGN)`), so one that comes before this listens, or between two, never
/// kills the process (the default action); libdispatch still reports an ignored signal.
public enum HangupSignals {
    public static func stream() -> AsyncStream<Void> {
        AsyncStream { continuation in
            // A dispatch source may be cancelled from any thread.
            nonisolated(unsafe) let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
            source.setEventHandler { continuation.yield() }
            continuation.onTermination = { _ in source.cancel() }
            source.resume()
        }
    }
}
