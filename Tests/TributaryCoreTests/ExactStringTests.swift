import Testing
import TributaryCore

/// Strings from devices compare by their bytes (`sameBytes`, `ExactString`), never by Swift's
/// canonical equivalence.
struct ExactStringTests {
    @Test func canonicallyEquivalentSpellingsDiffer() {
        let composed = "caf\u{00E9}", decomposed = "cafe\u{0301}"
        #expect(composed == decomposed, "the premise: Swift takes them as equal")
        #expect(!sameBytes(composed, decomposed))
        #expect(ExactString(composed) != ExactString(decomposed))
        #expect(Set([ExactString(composed), ExactString(decomposed)]).count == 2)
        #expect(!GatewayID.same("gw\u{00C5}", "gw\u{212B}"))
    }

    @Test func equalBytesAreEqualWhateverTheStorage() {
        let long = String(repeating: "sensor-", count: 20)
        // Built differently, so the two are separate buffers, not one shared.
        let built = String(decoding: Array(long.utf8), as: UTF8.self)
        let small = "t1", smallBuilt = String("xt1".dropFirst())
        let sub = long.dropFirst(7)
        for (a, b) in [(long, built), (small, smallBuilt), (String(sub), String(long.dropFirst(7))), ("", "")] {
            #expect(sameBytes(a, b))
            #expect(ExactString(a) == ExactString(b))
            #expect(ExactString(a).hashValue == ExactString(b).hashValue)
        }
        // Same length, one byte apart, at the start, in the middle and at the end.
        for index in [0, 70, long.utf8.count - 1] {
            var bytes = Array(long.utf8)
            bytes[index] = UInt8(ascii: "#")
            #expect(!sameBytes(long, String(decoding: bytes, as: UTF8.self)))
        }
        #expect(!sameBytes("t1", "t12"))
    }
}

struct SeriesIdentityTests {
    private func reading(sensor: String = "t1", unit: String? = nil, labels: [String: String] = [:]) -> Reading {
        Reading(gatewayID: "gw", sensorID: sensor, metric: "temperature", topic: "tele/t1/SENSOR", timeMs: 1, receivedAtMs: 1,
                value: .double(1), unit: unit, labels: labels)
    }

    /// `surelySame` may say false for one series (labelled readings), never true for two.
    @Test func surelySameNeverJoinsTwoSeries() {
        #expect(SeriesIdentity.surelySame(reading(), reading()))
        #expect(SeriesIdentity.surelySame(reading(unit: nil), reading(unit: "")), "no unit and an empty one are one series, as in SeriesIdentity")
        #expect(SeriesIdentity(reading(unit: nil)) == SeriesIdentity(reading(unit: "")))
        #expect(!SeriesIdentity.surelySame(reading(sensor: "caf\u{00E9}"), reading(sensor: "cafe\u{0301}")))
        #expect(!SeriesIdentity.surelySame(reading(unit: "C"), reading(unit: "F")))
        #expect(!SeriesIdentity.surelySame(reading(labels: ["a": "1"]), reading(labels: ["a": "1"])), "labels: not known, the caller builds the keys")
        #expect(!SeriesIdentity.surelySame(reading(labels: ["a": "1"]), reading()))
    }
}
