import Crypto
import Foundation

/// Finds who holds an offered secret (a gateway's bearer token) among many, in time that does
/// not grow with their number and does not tell an attacker how close a guess came.
///
/// Comparing the offered token with every token in constant time was both safe and linear: at
/// 10,000 gateways it was half of the aggregator's CPU (issue 26's profile). Here each secret is
/// filed under its HMAC-SHA256 with a key made at random when the index is built and never
/// shown: the lookup's timing can depend only on that digest, which says nothing about the
/// secret to someone without the key; the candidates found are then compared in constant time.
public struct SecretIndex<Value: Sendable>: Sendable {
    private struct Holder: Sendable {
        let secret: [UInt8]
        let value: Value
    }

    private let key = SymmetricKey(size: .bits256)
    private let holders: [Data: [Holder]]
    public let count: Int

    /// `pairs` in order: when two hold the same secret, the later one is found.
    public init(_ pairs: [(secret: [UInt8], value: Value)]) {
        var holders: [Data: [Holder]] = [:]
        for pair in pairs {
            holders[Self.digest(pair.secret, key), default: []].append(Holder(secret: pair.secret, value: pair.value))
        }
        self.holders = holders
        count = pairs.count
    }

    /// Who holds `offered`, or nil.
    public func holder(of offered: [UInt8]) -> Value? {
        var found: Value?
        for candidate in holders[Self.digest(offered, key)] ?? [] where Self.equalInConstantTime(offered, candidate.secret) {
            found = candidate.value
        }
        return found
    }

    private static func digest(_ secret: [UInt8], _ key: SymmetricKey) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: secret, using: key))
    }

    /// Equal or not, in the same time wherever they differ (only their lengths show).
    public static func equalInConstantTime(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
