import Foundation
import Synchronization

/// The controlling terminal for `watch`: raw keys, the alternate screen, and putting all of it
/// back on every way out (q, Ctrl-C, SIGTERM, an error).
public final class Terminal: Sendable {
    private let saved: Mutex<termios?> = Mutex(nil)
    private let restored = Atomic<Bool>(false)

    public init() {}

    public static var isInteractive: Bool { isatty(STDIN_FILENO) == 1 && isatty(STDOUT_FILENO) == 1 }

    /// Columns and rows, or 80x24 when unknown.
    public static var size: (width: Int, height: Int) {
        var ws = winsize()
        guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_col > 0, ws.ws_row > 0 else { return (80, 24) }
        return (Int(ws.ws_col), Int(ws.ws_row))
    }

    /// Keys arrive one by one without echo; Ctrl-C arrives as a key (0x03) instead of a signal,
    /// so quitting always goes through `restore`.
    public func enterFullScreen() {
        var original = termios()
        if tcgetattr(STDIN_FILENO, &original) == 0 {
            saved.withLock { $0 = original }
            var raw = original
            raw.c_lflag &= ~tcflag_t(ICANON | ECHO | ISIG)
            withUnsafeMutableBytes(of: &raw.c_cc) { cc in
                cc[Int(VMIN)] = 0
                cc[Int(VTIME)] = 0
            }
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw)
        }
        write("\u{1B}[?1049h\u{1B}[?25l\u{1B}[H\u{1B}[2J")  // alternate screen, hide the cursor, clear
    }

    /// Leaves the alternate screen and restores the terminal's modes; safe to call twice.
    public func restore() {
        guard !restored.exchange(true, ordering: .acquiringAndReleasing) else { return }
        write("\u{1B}[?25h\u{1B}[?1049l")
        if var original = saved.withLock({ $0 }) { tcsetattr(STDIN_FILENO, TCSAFLUSH, &original) }
    }

    /// Redraws in place: home, each line cleared to its end, then the rest of the screen cleared.
    public func draw(_ lines: [String]) {
        guard !restored.load(ordering: .acquiring) else { return }  // a signal ended the screen
        write("\u{1B}[H" + lines.map { $0 + "\u{1B}[K" }.joined(separator: "\r\n") + "\u{1B}[J")
    }

    public func write(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    /// Keys typed, read on a thread of their own (the read blocks), until `stop`.
    public static func keys() -> (stream: AsyncStream<UInt8>, stop: @Sendable () -> Void) {
        let (stream, continuation) = AsyncStream<UInt8>.makeStream(bufferingPolicy: .bufferingNewest(16))
        let running = KeyReaderFlag()
        let thread = Thread {
            var pfd = pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)
            var byte: UInt8 = 0
            while running.isRunning {
                guard poll(&pfd, 1, 100) > 0 else { continue }
                if read(STDIN_FILENO, &byte, 1) == 1 {
                    continuation.yield(byte)
                } else {
                    break  // end of input
                }
            }
            continuation.finish()
        }
        thread.start()
        return (stream, { running.stop() })
    }
}

private final class KeyReaderFlag: Sendable {
    private let value = Atomic<Bool>(true)
    var isRunning: Bool { value.load(ordering: .acquiring) }
    func stop() { value.store(false, ordering: .releasing) }
}
