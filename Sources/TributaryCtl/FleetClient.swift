import AsyncHTTPClient
import Foundation
import NIOCore
import TributaryCore

/// Reads the fleet view from an aggregator's admin API.
public enum FleetClient {
    public struct FetchError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Returns the decoded view and the JSON as received.
    public static func fetch(aggregator: String) async throws -> (view: FleetView, json: Data) {
        let base = aggregator.hasSuffix("/") ? String(aggregator.dropLast()) : aggregator
        let request = HTTPClientRequest(url: base + "/v1/fleet")
        let data: Data
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 64 << 20)
            guard response.status == .ok else {
                throw FetchError(description: "aggregator \(base) answered \(response.status.code): \(String(buffer: body).prefix(300))")
            }
            data = Data(Array(buffer: body))
        } catch let error as FetchError {
            throw error
        } catch {
            throw FetchError(description: "cannot reach the aggregator at \(base): \(error)")
        }
        do {
            return (try JSONDecoder().decode(FleetView.self, from: data), data)
        } catch {
            throw FetchError(description: "aggregator \(base) sent a fleet view this tributaryctl cannot read: \(error)")
        }
    }
}
