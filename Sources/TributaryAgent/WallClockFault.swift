import Foundation
import Logging
import TributaryCore
import TributaryRuntime

/// Fault injection for tests: steps this process's wall clock as NTP would, without touching
/// the machine's clock or the monotonic clock. With `TRIBUTARY_FAULT_WALL_CLOCK_FILE` set, the
/// agent reads a number of seconds from that file every 50 ms and offsets its wall clock by it
/// (the clock-step tests write `7200`, then `0`). (libfaketime cannot do this for a Swift
/// program: it hides argv from the runtime and stretches its sleeps after a backward step.)
public enum WallClockFault {
    public static let environmentVariable = "TRIBUTARY_FAULT_WALL_CLOCK_FILE"

    /// Starts following the file named by the environment, if any.
    public static func followIfRequested(logger: Logger) {
        guard let path = ProcessInfo.processInfo.environment[environmentVariable], !path.isEmpty else { return }
        logger.warning("fault injection: the wall clock is offset by the seconds in a file", metadata: ["file": "\(path)"])
        let thread = Thread {
            var last: Int64?
            while true {
                let text = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
                if let seconds = text.flatMap(Double.init), seconds.isFinite, abs(seconds) < 1e9 {
                    let ms = Int64(seconds * 1000)
                    if ms != last {
                        WallClock.setFaultOffsetMs(ms)
                        logger.warning("fault injection: wall clock stepped", metadata: ["offset_seconds": "\(seconds)"])
                        last = ms
                    }
                }
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
        thread.name = "wall-clock-fault"
        thread.start()
    }
}
