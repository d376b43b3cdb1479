import Testing
import TributaryCore
import TributarySparkplug
@testable import TributaryAgent

/// What one MQTT message becomes, with no broker or buffer: the router alone.
@Suite("message router")
struct MessageRouterTests {
    static func router(_ subscriptions: [AgentConfig.Subscription]) throws -> MessageRouter {
        try MessageRouter(subscriptions: subscriptions, gatewayID: "gw-own", hashKey: nil)
    }

    static func json(_ filter: String, _ template: String, timeField: String? = "Time") throws -> AgentConfig.Subscription {
        AgentConfig.Subscription(topic: filter, template: try TopicTemplate(template), format: .json, timeField: timeField)
    }

    static func sessions() -> MessageRouter.Sessions {
        .init(redeliveryFilter: RedeliveryFilter(capacity: 64), sparkplug: SparkplugHost(gatewayID: "gw-own"))
    }

    /// Routes `payload` on `topic` at monotonic time `nowMs`.
    static func route(_ router: MessageRouter, _ topic: String, _ payload: String, _ readings: inout [Reading],
                      _ sessions: inout MessageRouter.Sessions, nowMs: Int64 = 1_000) -> MessageRouter.Result {
        router.route(topic: topic, payload: Array(payload.utf8), receivedAtMs: 1_700_000_000_000, monotonicMs: nowMs,
                     into: &readings, sessions: &sessions)
    }

    @Test func theFirstMatchingSubscriptionDecodesAndTheSameTimedPayloadAgainIsARedelivery() throws {
        // Tasmota with SetOption52 (Time with its offset): the payload names its readings' time, so the
        // same bytes are the same readings.
        let router = try Self.router([try Self.json("tele/+/SENSOR", "tele/{sensor}/SENSOR"), try Self.json("tele/#", "tele/{sensor}/{metric}")])
        var sessions = Self.sessions()
        var readings: [Reading] = []
        let payload = #"{"Time":"2026-12-05T10:00:00+01:00","AM2301":{"Temperature":21.5,"Humidity":40}}"#
        #expect(Self.route(router, "tele/plug-7/SENSOR", payload, &readings, &sessions) == .readings(count: 2, withheld: 0))
        #expect(readings.map(\.metric) == ["AM2301.Humidity", "AM2301.Temperature"] || readings.map(\.metric) == ["AM2301.Temperature", "AM2301.Humidity"])
        #expect(readings.allSatisfy { $0.sensorID == "plug-7" && $0.gatewayID == "gw-own" })
        #expect(Self.route(router, "tele/plug-7/SENSOR", payload, &readings, &sessions, nowMs: 2_000) == .redelivery)
        #expect(readings.count == 2, "a redelivery takes back exactly what it appended")
        let later = #"{"Time":"2026-12-05T10:00:10+01:00","AM2301":{"Temperature":21.6,"Humidity":40}}"#
        #expect(Self.route(router, "tele/plug-7/SENSOR", later, &readings, &sessions) == .readings(count: 2, withheld: 0))
        #expect(readings.count == 4)
    }

    @Test func aPayloadWithoutItsOwnTimeIsStoredEachTime() throws {
        let router = try Self.router([try Self.json("devices/+/state", "devices/{sensor}/state", timeField: nil)])
        var sessions = Self.sessions()
        var readings: [Reading] = []
        #expect(Self.route(router, "devices/a/state", #"{"t":1}"#, &readings, &sessions) == .readings(count: 1, withheld: 0))
        #expect(Self.route(router, "devices/a/state", #"{"t":1}"#, &readings, &sessions) == .readings(count: 1, withheld: 0),
                "without an event time, the same bytes may be a new reading")
        #expect(readings.count == 2)
    }

    @Test func quarantinedMessagesLeaveTheGroupsReadingsAlone() throws {
        let router = try Self.router([try Self.json("devices/+/state", "devices/{sensor}/state")])
        var sessions = Self.sessions()
        var readings: [Reading] = []
        #expect(Self.route(router, "devices/a/state", #"{"t":1,"h":2}"#, &readings, &sessions) == .readings(count: 2, withheld: 0))
        #expect(Self.route(router, "elsewhere/a", #"{"t":1}"#, &readings, &sessions) == .quarantined(reason: "no subscription matches the topic"))
        guard case .quarantined = Self.route(router, "devices/a/state", #"{"t":"#, &readings, &sessions) else {
            Issue.record("a truncated document is quarantined")
            return
        }
        // One reading too large for the aggregator: its whole message is quarantined, so a
        // replay after a fix brings all of it back, and nothing of it is appended.
        let huge = String(repeating: "x", count: ReadingLimits.defaultMaxTextBytes + 1)
        guard case .quarantined(let reason) = Self.route(router, "devices/b/state", #"{"ok":1,"note":"\#(huge)"}"#, &readings, &sessions) else {
            Issue.record("an oversized text value is quarantined")
            return
        }
        #expect(reason.contains("b/note") && reason.contains("exceeds"))
        #expect(readings.count == 2 && readings.allSatisfy { $0.sensorID == "a" })
    }

    @Test func theSubscriptionsRulesWithholdBeforeAnythingIsBuffered() throws {
        var subscription = try Self.json("devices/+/state", "devices/{sensor}/state", timeField: nil)
        subscription.policy = SubscriptionPolicy(classification: .core, rules: [.init(match: "owner.*", action: .drop)])
        let router = try Self.router([subscription])
        var sessions = Self.sessions()
        var readings: [Reading] = []
        let result = Self.route(router, "devices/a/state", #"{"t":1,"owner":{"name":"Li Wei","phone":"139"}}"#, &readings, &sessions)
        #expect(result == .readings(count: 1, withheld: 2))
        #expect(readings.map(\.metric) == ["t"] && readings[0].labels == ["classification": "core"])
    }

    @Test func aSparkplugPayloadSeenAlreadyIsRecognisedBeforeTheSessionSeesIt() throws {
        let router = try Self.router([AgentConfig.Subscription(topic: "spBv1.0/#", template: nil, format: .sparkplug)])
        var sessions = Self.sessions()
        var readings: [Reading] = []
        // Data from a node the host has no birth for: the session asks for a rebirth.
        let first = Self.route(router, "spBv1.0/plant/NDATA/node-1", "not protobuf", &readings, &sessions)
        #expect(first != .redelivery)
        #expect(sessions.sparkplugOutcome != nil, "the session's outcome is left for the caller to report")
        #expect(Self.route(router, "spBv1.0/plant/NDATA/node-1", "not protobuf", &readings, &sessions, nowMs: 1_500) == .redelivery)
        #expect(sessions.sparkplugOutcome == nil, "a redelivery never reaches the session")
        #expect(readings.isEmpty)
    }
}

extension MessageRouterTests {
    /// A reload's router keeps a removed filter's route while the agent runs: the broker may
    /// send what it queued for the filter even after its UNSUBACK.
    @Test func aRemovedFiltersRouteStaysWhileTheAgentRuns() throws {
        let both = try Self.router([try Self.json("a/+", "a/{sensor}"), try Self.json("b/+", "b/{sensor}")])
        let onlyA = try Self.router([try Self.json("a/+", "a/{sensor}")])
        func decodesB(_ router: MessageRouter) -> Bool {
            var sessions = Self.sessions()
            var readings: [Reading] = []
            if case .readings = Self.route(router, "b/x", #"{"Time":"2026-12-05T10:00:00Z","v":1}"#, &readings, &sessions) { return true }
            return false
        }
        #expect(!decodesB(onlyA))
        // Removed by one reload, then through any number of others: still decoded, retired.
        var router = both.replaced(by: onlyA)
        for _ in 0..<3 {
            #expect(decodesB(router))
            router = router.replaced(by: onlyA)
        }
        #expect(router.routes.map(\.topic) == ["a/+", "b/+"] && router.routes.map(\.retired) == [false, true])
        // Added back: the new route alone, not retired; the current routes come first.
        let back = router.replaced(by: both)
        #expect(back.routes.map(\.topic) == ["a/+", "b/+"] && back.routes.allSatisfy { !$0.retired })
    }
}
