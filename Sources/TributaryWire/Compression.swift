import CZlib
import CZstd

/// HTTP Content-Encoding of a batch body.
public enum ContentEncoding: String, Sendable, CaseIterable {
    case identity, gzip, zstd
}

public enum CompressionError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The body would inflate past the limit: refused before it exhausts memory.
    case tooLarge(limit: Int)
    case corrupt(encoding: ContentEncoding, detail: String)

    public var description: String {
        switch self {
        case .tooLarge(let limit): "decompressed body exceeds the limit of \(limit) bytes"
        case .corrupt(let encoding, let detail): "\(encoding.rawValue) body is corrupt: \(detail)"
        }
    }
}

/// gzip and zstd, in memory, with a hard cap on decompressed size (decompression bombs).
public enum Compression {
    public static func compress(_ input: [UInt8], encoding: ContentEncoding, level: Int32? = nil) -> [UInt8] {
        switch encoding {
        case .identity: input
        case .gzip: gzip(input, level: level ?? 6)
        case .zstd: zstd(input, level: level ?? 3)
        }
    }

    public static func decompress(_ input: [UInt8], encoding: ContentEncoding, maxSize: Int) throws(CompressionError) -> [UInt8] {
        switch encoding {
        case .identity:
            guard input.count <= maxSize else { throw .tooLarge(limit: maxSize) }
            return input
        case .gzip: return try gunzip(input, maxSize: maxSize)
        case .zstd: return try unzstd(input, maxSize: maxSize)
        }
    }

    private static func gzip(_ input: [UInt8], level: Int32) -> [UInt8] {
        var stream = z_stream()
        guard tributary_deflate_init_gzip(&stream, level) == Z_OK else { fatalError("zlib deflateInit2 failed: out of memory") }
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, UInt(input.count))) + 32)
        var input = input
        let produced: Int = input.withUnsafeMutableBufferPointer { src in
            output.withUnsafeMutableBufferPointer { dst in
                stream.next_in = src.baseAddress
                stream.avail_in = UInt32(src.count)
                stream.next_out = dst.baseAddress
                stream.avail_out = UInt32(dst.count)
                let rc = deflate(&stream, Z_FINISH)
                precondition(rc == Z_STREAM_END, "deflate into a deflateBound-sized buffer must finish")
                return dst.count - Int(stream.avail_out)
            }
        }
        output.removeSubrange(produced...)
        return output
    }

    private static func gunzip(_ input: [UInt8], maxSize: Int) throws(CompressionError) -> [UInt8] {
        var stream = z_stream()
        guard tributary_inflate_init_gzip(&stream) == Z_OK else { throw .corrupt(encoding: .gzip, detail: "cannot initialise zlib") }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var input = input
        let result: Result<Void, CompressionError> = input.withUnsafeMutableBufferPointer { src in
            stream.next_in = src.baseAddress
            stream.avail_in = UInt32(src.count)
            while true {
                let (rc, produced) = chunk.withUnsafeMutableBufferPointer { dst -> (Int32, Int) in
                    stream.next_out = dst.baseAddress
                    stream.avail_out = UInt32(dst.count)
                    let rc = inflate(&stream, Z_NO_FLUSH)
                    return (rc, dst.count - Int(stream.avail_out))
                }
                if output.count + produced > maxSize { return .failure(.tooLarge(limit: maxSize)) }
                output.append(contentsOf: chunk[0..<produced])
                switch rc {
                case Z_STREAM_END:
                    return stream.avail_in == 0 ? .success(()) : .failure(.corrupt(encoding: .gzip, detail: "data after the end of the stream"))
                case Z_OK: continue
                case Z_BUF_ERROR:
                    if stream.avail_in == 0 { return .failure(.corrupt(encoding: .gzip, detail: "truncated")) }
                    continue
                default:
                    let message = stream.msg.map { String(cString: $0) } ?? "error \(rc)"
                    return .failure(.corrupt(encoding: .gzip, detail: message))
                }
            }
        }
        try result.get()
        return output
    }

    private static func zstd(_ input: [UInt8], level: Int32) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: ZSTD_compressBound(input.count))
        let produced = input.withUnsafeBytes { src in
            output.withUnsafeMutableBytes { dst in
                ZSTD_compress(dst.baseAddress, dst.count, src.baseAddress, src.count, level)
            }
        }
        precondition(ZSTD_isError(produced) == 0, "zstd into a compressBound-sized buffer must succeed")
        output.removeSubrange(produced...)
        return output
    }

    /// The smallest zstd window log whose window holds `size` bytes, within what zstd accepts
    /// (10) and what it allows by default (27, 128 MiB).
    static func windowLog(covering size: Int) -> Int {
        var log = 10
        while log < 27 && (1 << log) < size { log += 1 }
        return log
    }

    private static func unzstd(_ input: [UInt8], maxSize: Int) throws(CompressionError) -> [UInt8] {
        guard let context = ZSTD_createDCtx() else { throw .corrupt(encoding: .zstd, detail: "cannot allocate a context") }
        defer { ZSTD_freeDCtx(context) }
        // A frame header may ask for a window of up to 128 MiB, which the decoder allocates before
        // producing a byte: a 50-byte body cost 134 MB whatever maxSize said (found by fuzz/).
        // No honest frame needs a window larger than its output may be.
        guard ZSTD_isError(ZSTD_DCtx_setParameter(context, ZSTD_d_windowLogMax, Int32(windowLog(covering: maxSize)))) == 0 else {
            throw .corrupt(encoding: .zstd, detail: "cannot limit the window size")
        }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        let result: Result<Void, CompressionError> = input.withUnsafeBytes { src in
            var inBuffer = ZSTD_inBuffer(src: src.baseAddress, size: src.count, pos: 0)
            var lastHint = 1
            while inBuffer.pos < inBuffer.size || lastHint != 0 {
                let (hint, produced) = chunk.withUnsafeMutableBytes { dst -> (Int, Int) in
                    var outBuffer = ZSTD_outBuffer(dst: dst.baseAddress, size: dst.count, pos: 0)
                    let hint = ZSTD_decompressStream(context, &outBuffer, &inBuffer)
                    return (hint, outBuffer.pos)
                }
                if ZSTD_getErrorCode(hint) == ZSTD_error_frameParameter_windowTooLarge {
                    // The frame says it needs more than maxSize: a bomb, like one that inflates past it.
                    return .failure(.tooLarge(limit: maxSize))
                }
                if ZSTD_isError(hint) != 0 {
                    return .failure(.corrupt(encoding: .zstd, detail: String(cString: ZSTD_getErrorName(hint))))
                }
                if output.count + produced > maxSize { return .failure(.tooLarge(limit: maxSize)) }
                output.append(contentsOf: chunk[0..<produced])
                lastHint = hint
                if inBuffer.pos == inBuffer.size && hint != 0 && produced < chunk.count {
                    return .failure(.corrupt(encoding: .zstd, detail: "truncated"))
                }
            }
            return .success(())
        }
        try result.get()
        return output
    }
}
