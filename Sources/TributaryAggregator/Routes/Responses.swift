import Foundation
import Hummingbird

/// The two shapes of the aggregator's JSON answers.
extension Response {
    /// `{"error": reason}` with `status`.
    static func problem(_ status: HTTPResponse.Status, _ reason: String) -> Response {
        let body = (try? JSONEncoder().encode(["error": reason])) ?? Data()
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// `value` as JSON with sorted keys (stable output for tools and tests).
    static func json(_ value: some Encodable) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Response(status: .ok, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }
}
