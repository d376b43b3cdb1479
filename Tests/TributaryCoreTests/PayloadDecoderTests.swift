import Testing
@testable import TributaryCore

@Suite("payload decoding")
struct PayloadDecoderTests {
    let receivedAt: Int64 = 1_700_000_500_000

    func decoder(_ format: PayloadFormat, _ template: String, timeField: String? = nil) throws -> PayloadDecoder {
        try PayloadDecoder(format: format, template: TopicTemplate(template), timeField: timeField, defaultGatewayID: "gw-own")
    }

    struct JSONCase: Sendable, CustomTestStringConvertible {
        let name: String
        let payload: String
        let expected: [(String, ReadingValue, Int64?)]  // metric, value, event time (nil = receive time)
        var testDescription: String { name }
    }

    static let jsonCases: [JSONCase] = [
        JSONCase(name: "Tasmota SENSOR with nested ENERGY and ISO time",
                 payload: #"{"Time":"2024-05-01T12:00:00+02:00","ENERGY":{"Total":12.5,"Power":130,"Voltage":231.4},"Relay":true}"#,
                 expected: [("ENERGY.Total", .double(12.5), 1_714_557_600_000), ("ENERGY.Power", .integer(130), 1_714_557_600_000),
                            ("ENERGY.Voltage", .double(231.4), 1_714_557_600_000), ("Relay", .boolean(true), 1_714_557_600_000)]),
        JSONCase(name: "zigbee2mqtt style, epoch ms, strings kept",
                 payload: #"{"Time":1700000000123,"temperature":21.53,"humidity":40,"battery":97,"state":"ON","linkquality":null}"#,
                 expected: [("temperature", .double(21.53), 1_700_000_000_123), ("humidity", .integer(40), 1_700_000_000_123),
                            ("battery", .integer(97), 1_700_000_000_123), ("state", .text("ON"), 1_700_000_000_123)]),
        JSONCase(name: "epoch seconds with a fraction",
                 payload: #"{"Time":1700000000.25,"v":1}"#, expected: [("v", .integer(1), 1_700_000_000_250)]),
        JSONCase(name: "epoch nanoseconds",
                 payload: #"{"Time":1700000000123456789,"v":-2.5e-3}"#, expected: [("v", .double(-0.0025), 1_700_000_000_123)]),
        JSONCase(name: "no time field: receive time",
                 payload: #"{"a":{"b":{"c":1}}}"#, expected: [("a.b.c", .integer(1), nil)]),
        JSONCase(name: "array of objects: one record each, own times",
                 payload: #"{"readings":[{"Time":"2024-01-01T00:00:00Z","t":1},{"Time":"2024-01-01T00:00:01.5Z","t":2}]}"#,
                 expected: [("readings.t", .integer(1), 1_704_067_200_000), ("readings.t", .integer(2), 1_704_067_201_500)]),
        JSONCase(name: "array of scalars: indexed",
                 payload: #"{"rgb":[255,128,0]}"#, expected: [("rgb.0", .integer(255), nil), ("rgb.1", .integer(128), nil), ("rgb.2", .integer(0), nil)]),
        JSONCase(name: "unicode escapes in strings",
                 payload: #"{"msg":"caf\u00e9 \ud83d\ude00"}"#, expected: [("msg", .text("café 😀"), nil)]),
    ]

    @Test(arguments: jsonCases)
    func json(_ c: JSONCase) throws {
        let readings = try decoder(.json, "devices/{sensor}/state", timeField: "Time")
            .decode(topic: "devices/plug-7/state", payload: Array(c.payload.utf8), receivedAtMs: receivedAt)
        #expect(readings.count == c.expected.count)
        for (reading, (metric, value, time)) in zip(readings, c.expected) {
            #expect(reading.metric == metric)
            #expect(reading.value == value)
            #expect(reading.timeMs == (time ?? receivedAt))
            #expect(reading.receivedAtMs == receivedAt)
            #expect(reading.sensorID == "plug-7")
            #expect(reading.gatewayID == "gw-own", "without {gateway} the agent's own id is used")
        }
    }

    struct BadCase: Sendable, CustomTestStringConvertible {
        let name: String
        let format: PayloadFormat
        let payload: [UInt8]
        let reasonContains: String
        var testDescription: String { name }
    }

    static let badCases: [BadCase] = [
        BadCase(name: "truncated JSON", format: .json, payload: Array(#"{"t":21.5,"#.utf8), reasonContains: "invalid JSON"),
        BadCase(name: "trailing garbage", format: .json, payload: Array(#"{"t":1} x"#.utf8), reasonContains: "after the document"),
        BadCase(name: "not UTF-8", format: .json, payload: [0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D], reasonContains: "UTF-8"),
        BadCase(name: "empty", format: .json, payload: [], reasonContains: "empty"),
        BadCase(name: "only nulls", format: .json, payload: Array(#"{"a":null}"#.utf8), reasonContains: "no values"),
        BadCase(name: "timestamp without zone", format: .json, payload: Array(#"{"Time":"2024-05-01T12:00:00","v":1}"#.utf8), reasonContains: "no zone"),
        BadCase(name: "timestamp of wrong type", format: .json, payload: Array(#"{"Time":true,"v":1}"#.utf8), reasonContains: "timestamp"),
        BadCase(name: "deep nesting", format: .json, payload: Array((String(repeating: "[", count: 100) + String(repeating: "]", count: 100)).utf8), reasonContains: "nesting"),
        BadCase(name: "number: words", format: .number, payload: Array("warm".utf8), reasonContains: "not a number"),
        BadCase(name: "number: NaN", format: .number, payload: Array("nan".utf8), reasonContains: "not a number"),
    ]

    @Test(arguments: badCases)
    func malformed(_ c: BadCase) throws {
        let d = try decoder(c.format, c.format == .number ? "devices/{sensor}/{metric}" : "devices/{sensor}/state", timeField: "Time")
        let topic = c.format == .number ? "devices/s1/temp" : "devices/s1/state"
        do {
            _ = try d.decode(topic: topic, payload: c.payload, receivedAtMs: receivedAt)
            Issue.record("expected a failure")
        } catch {
            #expect(error.description.contains(c.reasonContains), "\(error)")
        }
    }

    @Test(arguments: [("21.5", ReadingValue.double(21.5)), (" -3\n", .integer(-3)), ("1e3", .double(1000)), ("42", .integer(42))])
    func number(_ payload: String, _ value: ReadingValue) throws {
        let readings = try decoder(.number, "site/{gateway}/{sensor}/{metric}")
            .decode(topic: "site/gw-9/boiler/temp", payload: Array(payload.utf8), receivedAtMs: receivedAt)
        #expect(readings == [Reading(gatewayID: "gw-9", sensorID: "boiler", metric: "temp", topic: "site/gw-9/boiler/temp",
                                     timeMs: receivedAt, receivedAtMs: receivedAt, value: value)])
    }

    @Test func jsonWithMetricInTemplate() throws {
        let d = try decoder(.json, "site/{sensor}/{metric}", timeField: "ts")
        let readings = try d.decode(topic: "site/s1/temp", payload: Array(#"{"ts":1700000000000,"value":20.5,"min":19}"#.utf8), receivedAtMs: receivedAt)
        #expect(readings.map(\.metric) == ["temp", "temp.min"])
    }

    @Test func topicMustFitTemplate() throws {
        let d = try decoder(.json, "devices/{sensor}/state")
        #expect(throws: PayloadError.topicMismatch(topic: "devices/s1/other", template: "devices/{sensor}/state")) {
            try d.decode(topic: "devices/s1/other", payload: Array("1".utf8), receivedAtMs: 0)
        }
    }

    @Test func configErrors() throws {
        #expect(throws: PayloadDecoderConfigError.numberNeedsMetric(template: "a/{sensor}")) {
            try decoder(.number, "a/{sensor}")
        }
        #expect(throws: PayloadDecoderConfigError.missingSensor(template: "a/{metric}")) {
            try decoder(.json, "a/{metric}")
        }
    }
}

/// `time_zone`: zone-less ISO 8601 times (stock Tasmota's `Time`) read in the subscription's zone.
@Suite("payload time zones")
struct PayloadTimeZoneTests {
    static let tasmota = #"{"Time":"2026-12-05T14:32:51","ENERGY":{"Power":130}}"#

    static func decode(_ zone: PayloadTimeZone?, _ payload: String = tasmota) throws -> [Reading] {
        try PayloadDecoder(format: .json, template: TopicTemplate("tele/{sensor}/SENSOR"), timeField: "Time", timeZone: zone,
                           defaultGatewayID: "gw").decode(topic: "tele/plug/SENSOR", payload: Array(payload.utf8), receivedAtMs: 1)
    }

    @Test func withoutAZoneAZonelessTimeIsRefusedAndSaysWhatToSet() throws {
        #expect(throws: PayloadError.self) { try Self.decode(nil) }
        do {
            _ = try Self.decode(nil)
        } catch {
            #expect("\(error)".contains("time_zone"), "\(error)")
        }
    }

    @Test func offsetsNamesAndUTC() throws {
        // 2026-12-05T14:32:51 is 1_796_481_171 s after the epoch when read as UTC.
        let utc: Int64 = 1_796_481_171_000
        #expect(try Self.decode(PayloadTimeZone("+08:00"))[0].timeMs == utc - 8 * 3_600_000)
        #expect(try Self.decode(PayloadTimeZone("-0530"))[0].timeMs == utc + 5 * 3_600_000 + 30 * 60_000)
        #expect(try Self.decode(PayloadTimeZone("UTC"))[0].timeMs == utc)
        #expect(try Self.decode(PayloadTimeZone("Asia/Shanghai"))[0].timeMs == utc - 8 * 3_600_000)
        // A time that carries its zone keeps it, whatever the subscription says.
        #expect(try Self.decode(PayloadTimeZone("+08:00"), #"{"Time":"2026-12-05T14:32:51Z","v":1}"#)[0].timeMs == utc)
    }

    @Test func namedZonesFollowDaylightSavingTime() throws {
        let berlin = try PayloadTimeZone("Europe/Berlin")
        // Winter (CET, +01:00) and summer (CEST, +02:00), read as UTC first.
        let winterWall = try Timestamp.epochMs(fromISO8601: "2026-01-15T12:00:00Z")
        let summerWall = try Timestamp.epochMs(fromISO8601: "2026-07-15T12:00:00Z")
        #expect(berlin.epochMs(ofWallTime: winterWall) == winterWall - 3_600_000)
        #expect(berlin.epochMs(ofWallTime: summerWall) == summerWall - 7_200_000)
        // The day clocks go forward (2026-03-29, 02:00 -> 03:00): just before and just after.
        let before = try Timestamp.epochMs(fromISO8601: "2026-03-29T01:30:00Z")
        let after = try Timestamp.epochMs(fromISO8601: "2026-03-29T03:30:00Z")
        #expect(berlin.epochMs(ofWallTime: before) == before - 3_600_000)
        #expect(berlin.epochMs(ofWallTime: after) == after - 7_200_000)
    }

    @Test(arguments: ["", "+25:00", "+8", "Mars/Olympus", "Shanghai", "+08:60", "08:00"])
    func nonsenseIsRefused(_ text: String) {
        #expect(throws: PayloadTimeZoneError.self) { try PayloadTimeZone(text) }
    }

    @Test func localIsTheGatewaysZone() throws {
        #expect(try PayloadTimeZone("local").description.hasPrefix("local ("))
        #expect(try PayloadTimeZone("+05:45").description == "+05:45" && PayloadTimeZone("Z").description == "+00:00")
    }
}

@Suite("payload time zone bounds")
struct PayloadTimeZoneBoundsTests {
    @Test func offsetsStopAtFourteenHours() throws {
        #expect(try PayloadTimeZone("+14:00").description == "+14:00")
        #expect(try PayloadTimeZone("+08").description == "+08:00", "a whole-hour offset may omit its minutes")
        #expect(throws: PayloadTimeZoneError.self) { try PayloadTimeZone("+14:59") }
    }
}
