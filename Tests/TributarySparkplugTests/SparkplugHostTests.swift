import Testing
import TributaryCore
@testable import TributarySparkplug

/// The host application's side of Sparkplug B sessions, fed messages an edge node encoded.
@Suite struct SparkplugHostTests {
    let t0: Int64 = 1_800_000_000_000
    let metrics: [SparkplugEdgeNode.Metric] = [
        .init(name: "Temperature", type: .float, value: .double(21.5)),
        .init(name: "Pressure/kPa", type: .double, value: .double(101.325)),
        .init(name: "Count", type: .uint64, value: .integer(7)),
        .init(name: "Offset", type: .int16, value: .integer(-300)),
        .init(name: "Running", type: .boolean, value: .boolean(true)),
        .init(name: "Mode", type: .string, value: .text("auto")),
        .init(name: "Since", type: .dateTime, value: .integer(1_799_999_000_000)),
    ]

    func feed(_ host: inout SparkplugHost, _ message: SparkplugEdgeNode.Message, at time: Int64? = nil) -> SparkplugHost.Outcome {
        host.receive(topic: message.topic, payload: message.payload, receivedAtMs: time ?? t0 + 500)
    }

    @Test func birthsDefineAliasesAndDataDecodesByAlias() {
        var node = SparkplugEdgeNode(group: "plant1", edgeNode: "line4", bdSeq: 3)
        var host = SparkplugHost(gatewayID: "gw-1")
        let birth = feed(&host, node.birth(metrics: [.init(name: "Uptime", type: .int64, value: .integer(12))], timeMs: t0))
        // bdSeq describes the session and is not stored; the node's own metric is.
        #expect(birth.readings.map(\.metric) == ["Uptime"])
        #expect(birth.readings.first?.sensorID == "plant1/line4")
        #expect(birth.quarantineReason == nil && birth.rebirth == nil && birth.notices.isEmpty)

        let dbirth = feed(&host, node.deviceBirth("press-2", metrics: metrics, timeMs: t0 + 1))
        #expect(dbirth.readings.count == metrics.count)
        var changed = metrics
        changed[0].value = .double(22.25)
        changed[3].value = .integer(-32768)
        changed[2].value = .integer(Int64.max)
        let data = feed(&host, node.data("press-2", metrics: changed, timeMs: t0 + 2))
        #expect(data.quarantineReason == nil)
        #expect(data.carriesEventTime)
        #expect(data.readings.map(\.value) == changed.map { $0.type == .float ? .double(Double(Float($0.value.numericValue!))) : $0.value })
        #expect(data.readings.allSatisfy { $0.sensorID == "plant1/line4/press-2" && $0.timeMs == t0 + 2 && $0.gatewayID == "gw-1" })
        #expect(data.readings.map(\.metric) == metrics.map(\.name))
        #expect(data.readings.first?.topic == "spBv1.0/plant1/DDATA/line4/press-2")
    }

    @Test func dataBeforeBirthIsQuarantinedAndARebirthRequestedOnceAWhile() {
        var node = SparkplugEdgeNode(group: "g", edgeNode: "e")
        _ = node.birth(metrics: [], timeMs: t0)  // the host never sees it (started later)
        _ = node.deviceBirth("d", metrics: metrics, timeMs: t0)
        var host = SparkplugHost(gatewayID: "gw")
        let first = feed(&host, node.data("d", metrics: metrics, timeMs: t0 + 1), at: t0 + 10)
        #expect(first.readings.isEmpty)
        #expect(first.quarantineReason?.contains("before its NBIRTH") == true)
        #expect(first.rebirth == SparkplugTopic.Node(group: "g", edgeNode: "e"))
        #expect(first.rebirth?.commandTopic == "spBv1.0/g/NCMD/e")
        // Asked again only after the interval, not for every message.
        let second = feed(&host, node.data("d", metrics: metrics, timeMs: t0 + 2), at: t0 + 20)
        #expect(second.quarantineReason != nil && second.rebirth == nil)
        let later = feed(&host, node.data("d", metrics: metrics, timeMs: t0 + 3), at: t0 + 10 + host.rebirthIntervalMs)
        #expect(later.rebirth != nil)

        // The rebirth: NBIRTH then DBIRTH, and data decodes again.
        #expect(feed(&host, node.birth(metrics: [], timeMs: t0 + 4)).notices.isEmpty)
        _ = feed(&host, node.deviceBirth("d", metrics: metrics, timeMs: t0 + 5))
        let data = feed(&host, node.data("d", metrics: metrics, timeMs: t0 + 6))
        #expect(data.quarantineReason == nil && data.readings.count == metrics.count && data.rebirth == nil)
    }

    @Test func aSequenceGapIsReportedTheDataKeptAndARebirthRequested() {
        var node = SparkplugEdgeNode(group: "g", edgeNode: "e")
        var host = SparkplugHost(gatewayID: "gw")
        _ = feed(&host, node.birth(metrics: [], timeMs: t0))
        _ = feed(&host, node.deviceBirth("d", metrics: metrics, timeMs: t0))
        node.skipSequenceNumber()
        let gap = feed(&host, node.data("d", metrics: metrics, timeMs: t0 + 1))
        #expect(gap.notices == [.sequenceGap(node: "g/e", expected: 2, received: 3)])
        #expect(gap.readings.count == metrics.count)
        #expect(gap.rebirth != nil)
        // The count goes on from the seq received.
        #expect(feed(&host, node.data("d", metrics: metrics, timeMs: t0 + 2)).notices.isEmpty)
    }

    @Test func seqWrapsAfter255WithoutAGap() {
        var node = SparkplugEdgeNode(group: "g", edgeNode: "e")
        var host = SparkplugHost(gatewayID: "gw")
        _ = feed(&host, node.birth(metrics: [.init(name: "x", type: .int32, value: .integer(1))], timeMs: t0))
        for i in 0..<600 {
            let outcome = feed(&host, node.data(nil, metrics: [.init(name: "x", type: .int32, value: .integer(Int64(i)))], timeMs: t0 + Int64(i)))
            #expect(outcome.notices.isEmpty && outcome.readings.count == 1)
        }
    }

    @Test func deathEndsTheSessionOnlyWithItsOwnBdSeq() {
        var node = SparkplugEdgeNode(group: "g", edgeNode: "e", bdSeq: 5)
        var host = SparkplugHost(gatewayID: "gw")
        _ = feed(&host, node.birth(metrics: [], timeMs: t0))
        _ = feed(&host, node.deviceBirth("d", metrics: metrics, timeMs: t0))
        // An NDEATH of an older session (bdSeq 4) is a will the broker delivered late: ignored.
        var old = SparkplugEdgeNode(group: "g", edgeNode: "e", bdSeq: 4)
        let stale = feed(&host, old.death())
        #expect(stale.notices == [.staleDeath(node: "g/e", bdSeq: 4, current: 5)])
        #expect(host.isOnline(.init(group: "g", edgeNode: "e")))

        let death = feed(&host, node.death())
        #expect(death.notices.isEmpty && death.readings.isEmpty && death.quarantineReason == nil)
        #expect(!host.isOnline(.init(group: "g", edgeNode: "e")))
        // Data after the death waits for a new birth.
        let after = feed(&host, node.data("d", metrics: metrics, timeMs: t0 + 9))
        #expect(after.quarantineReason != nil && after.rebirth != nil)
    }

    @Test func aDeviceDeathStopsThatDeviceOnly() {
        var node = SparkplugEdgeNode(group: "g", edgeNode: "e")
        var host = SparkplugHost(gatewayID: "gw")
        _ = feed(&host, node.birth(metrics: [], timeMs: t0))
        _ = feed(&host, node.deviceBirth("a", metrics: metrics, timeMs: t0))
        _ = feed(&host, node.deviceBirth("b", metrics: metrics, timeMs: t0))
        _ = feed(&host, node.deviceDeath("a", timeMs: t0 + 1))
        #expect(feed(&host, node.data("a", metrics: metrics, timeMs: t0 + 2)).quarantineReason?.contains("DBIRTH") == true)
        #expect(feed(&host, node.data("b", metrics: metrics, timeMs: t0 + 3)).readings.count == metrics.count)
    }

    @Test func unsupportedAndNullMetricsAreSkippedAndCounted() throws {
        var payload = SparkplugB_Payload()
        payload.seq = 0
        payload.timestamp = UInt64(t0)
        var bdSeq = SparkplugB_Payload.Metric()
        bdSeq.name = "bdSeq"
        SparkplugDataType.int64.set(.integer(0), on: &bdSeq)
        var bytes = SparkplugB_Payload.Metric()
        bytes.name = "Blob"
        bytes.datatype = SparkplugDataType.bytes.rawValue
        bytes.bytesValue = .init([1, 2, 3])
        var null = SparkplugB_Payload.Metric()
        null.name = "Nothing"
        null.datatype = SparkplugDataType.double.rawValue
        null.isNull = true
        var wrongKind = SparkplugB_Payload.Metric()
        wrongKind.name = "Mislabelled"
        wrongKind.datatype = SparkplugDataType.boolean.rawValue
        wrongKind.stringValue = "yes"
        payload.metrics = [bdSeq, bytes, null, wrongKind]
        var host = SparkplugHost(gatewayID: "gw")
        let outcome = host.receive(topic: "spBv1.0/g/NBIRTH/e", payload: try payload.serializedBytes() as [UInt8], receivedAtMs: t0)
        #expect(outcome.readings.isEmpty)
        #expect(outcome.notices.count == 2)
        #expect(outcome.notices.contains { if case .unsupportedMetric(_, "Blob", _) = $0 { true } else { false } })
        #expect(outcome.notices.contains { if case .unsupportedMetric(_, "Mislabelled", let why) = $0 { why.contains("string_value") } else { false } })
    }

    @Test func garbageAndForeignTopicsAreQuarantinedAndCommandsIgnored() {
        var host = SparkplugHost(gatewayID: "gw")
        #expect(host.receive(topic: "spBv1.0/g/NDATA/e", payload: [0xFF, 0xFF, 0xFF], receivedAtMs: t0).quarantineReason?.contains("not a Sparkplug B payload") == true)
        // A host application's STATE is not data, and not garbage either.
        #expect(host.receive(topic: "spBv1.0/STATE/host1", payload: Array("{\"online\":true}".utf8), receivedAtMs: t0) == SparkplugHost.Outcome())
        #expect(host.receive(topic: "spBv1.0/g/NOPE/e", payload: [], receivedAtMs: t0).quarantineReason != nil)
        #expect(host.receive(topic: "spBv1.0/g/DDATA/e", payload: [], receivedAtMs: t0).quarantineReason != nil)
        let command = host.receive(topic: "spBv1.0/g/NCMD/e", payload: SparkplugHost.rebirthRequest(timestampMs: t0), receivedAtMs: t0)
        #expect(command == SparkplugHost.Outcome())
    }

    @Test func topicsParseAndPrint() {
        #expect(SparkplugTopic("spBv1.0/g/DDATA/e/d") == SparkplugTopic(group: "g", type: .ddata, edgeNode: "e", device: "d"))
        #expect(SparkplugTopic("spBv1.0/g/NBIRTH/e")?.device == nil)
        #expect(SparkplugTopic("spBv1.0/g/DDATA/e") == nil)       // a device message needs its device
        #expect(SparkplugTopic("spBv1.0/g/NDATA/e/d") == nil)     // and a node message has none
        #expect(SparkplugTopic("spAv1.0/g/NDATA/e") == nil)
        #expect(SparkplugTopic("spBv1.0//NDATA/e") == nil)
        #expect(SparkplugTopic(group: "g", type: .ddeath, edgeNode: "e", device: "d").description == "spBv1.0/g/DDEATH/e/d")
    }

    @Test(arguments: SparkplugDataType.allCases)
    func everyStoredTypeRoundTrips(_ type: SparkplugDataType) throws {
        let value: ReadingValue? = switch type {
        case .int8: .integer(-128)
        case .int16: .integer(-32768)
        case .int32: .integer(Int64(Int32.min))
        case .int64: .integer(Int64.min)
        case .uint8: .integer(255)
        case .uint16: .integer(65535)
        case .uint32: .integer(Int64(UInt32.max))
        case .uint64: .integer(Int64.max)
        case .float: .double(0.5)
        case .double: .double(-1e300)
        case .boolean: .boolean(false)
        case .string, .text: .text("tëxt")
        case .uuid: .text("0f8fad5b-d9cb-469f-a165-70867728950e")
        case .dateTime: .integer(t0)
        case .dataSet, .bytes, .file, .template: nil
        }
        guard let value else { return }
        var metric = SparkplugB_Payload.Metric()
        type.set(value, on: &metric)
        let decoded = try SparkplugB_Payload.Metric(serializedBytes: try metric.serializedBytes() as [UInt8])
        #expect(type.value(of: decoded) == .value(value))
    }

    @Test func valuesOtherEncodersSendAreRead() {
        // Eclipse Tahu (and Ignition) send UInt32 in long_value.
        var metric = SparkplugB_Payload.Metric()
        metric.longValue = UInt64(UInt32.max)
        #expect(SparkplugDataType.uint32.value(of: metric) == .value(.integer(Int64(UInt32.max))))
        metric.longValue = UInt64(UInt32.max) + 1
        #expect(SparkplugDataType.uint32.value(of: metric) != .value(.integer(Int64(UInt32.max) + 1)))
        // A UInt64 past Int64 is kept as a number rather than wrapped negative.
        metric.longValue = UInt64.max
        #expect(SparkplugDataType.uint64.value(of: metric) == .value(.double(Double(UInt64.max))))
    }

    @Test func aMetricNamedButNeverBornIsQuarantinedWithARebirth() {
        var node = SparkplugEdgeNode(group: "g", edgeNode: "e")
        var host = SparkplugHost(gatewayID: "gw")
        _ = feed(&host, node.birth(metrics: [.init(name: "known", type: .double, value: .double(1))], timeMs: t0))
        var payload = SparkplugB_Payload()
        payload.seq = 1
        payload.timestamp = UInt64(t0 + 1)
        var metric = SparkplugB_Payload.Metric()
        metric.name = "never born"
        metric.doubleValue = 2  // no datatype, and none from a birth
        payload.metrics = [metric]
        let outcome = host.receive(topic: "spBv1.0/g/NDATA/e", payload: (try? payload.serializedBytes() as [UInt8]) ?? [], receivedAtMs: t0 + 2)
        #expect(outcome.readings.isEmpty && outcome.quarantineReason?.contains("did not define") == true && outcome.rebirth != nil)
    }

    /// What births defined is saved and read back by a new host (the agent restarted): the
    /// messages the broker kept meanwhile decode at once, whatever seq they come with.
    @Test func sessionsSurviveARestart() {
        var node = SparkplugEdgeNode(group: "g", edgeNode: "e", bdSeq: 9)
        var host = SparkplugHost(gatewayID: "gw")
        #expect(host.takeDefinitions() == nil, "nothing changed yet")
        _ = feed(&host, node.birth(metrics: [.init(name: "n", type: .int32, value: .integer(1))], timeMs: t0))
        _ = feed(&host, node.deviceBirth("d", metrics: metrics, timeMs: t0))
        let saved = host.takeDefinitions()
        #expect(saved != nil)
        _ = feed(&host, node.data("d", metrics: metrics, timeMs: t0 + 1))
        #expect(host.takeDefinitions() == nil, "data does not change what births defined")
        _ = node.data("d", metrics: metrics, timeMs: t0 + 2)  // lost while the agent was down

        var restarted = SparkplugHost(gatewayID: "gw", restoring: saved)
        let held = feed(&restarted, node.data("d", metrics: metrics, timeMs: t0 + 3))
        #expect(held.quarantineReason == nil && held.notices.isEmpty && held.rebirth == nil && held.readings.count == metrics.count)
        #expect(feed(&restarted, node.data(nil, metrics: [.init(name: "n", type: .int32, value: .integer(2))], timeMs: t0 + 4)).readings.count == 1)
        // The session's death still matches its bdSeq after the restart.
        _ = feed(&restarted, node.death())
        #expect(!restarted.isOnline(node.node))
        #expect(SparkplugHost(gatewayID: "gw", restoring: "not json").isOnline(node.node) == false)
    }

    @Test func aBirthWithAnotherSeqStartsTheCountWithoutAGap() throws {
        var payload = SparkplugB_Payload()
        payload.seq = 17
        var bdSeq = SparkplugB_Payload.Metric()
        bdSeq.name = "bdSeq"
        SparkplugDataType.int64.set(.integer(0), on: &bdSeq)
        payload.metrics = [bdSeq]
        var host = SparkplugHost(gatewayID: "gw")
        #expect(host.receive(topic: "spBv1.0/g/NBIRTH/e", payload: try payload.serializedBytes() as [UInt8], receivedAtMs: t0).notices.isEmpty)
        payload.seq = 18
        payload.metrics = []
        #expect(host.receive(topic: "spBv1.0/g/NDATA/e", payload: try payload.serializedBytes() as [UInt8], receivedAtMs: t0).notices.isEmpty)
    }

    /// `is_historical` values (store and forward) keep their own time and carry the label
    /// `historical=true`, so they are a series apart from the live values of the same metric.
    @Test func historicalMetricsAreLabelled() {
        var node = SparkplugEdgeNode(group: "g", edgeNode: "e")
        var host = SparkplugHost(gatewayID: "gw")
        _ = feed(&host, node.birth(metrics: [], timeMs: t0))
        _ = feed(&host, node.deviceBirth("d", metrics: Array(metrics.prefix(2)), timeMs: t0))
        var backlog = metrics[0]
        backlog.value = .double(19.5)
        backlog.isHistorical = true
        let late = feed(&host, node.data("d", metrics: [backlog], timeMs: t0 - 3_600_000))
        #expect(late.quarantineReason == nil)
        #expect(late.readings.count == 1)
        #expect(late.readings.first?.labels == [SparkplugHost.historicalLabel: "true"])
        #expect(late.readings.first?.timeMs == t0 - 3_600_000 && late.readings.first?.value == .double(19.5))
        let live = feed(&host, node.data("d", metrics: Array(metrics.prefix(2)), timeMs: t0 + 1))
        #expect(live.readings.count == 2 && live.readings.allSatisfy { $0.labels.isEmpty })
        #expect(SeriesIdentity(late.readings[0]) != SeriesIdentity(live.readings[0]), "historical values are a series of their own")
    }

    /// The STATE payload as Sparkplug 3.0 writes it, and host ids that can be a topic level.
    @Test func hostStatePayloadsAndIDs() {
        let state = SparkplugHostState(online: true, timestamp: t0)
        #expect(String(decoding: state.payload, as: UTF8.self) == "{\"online\":true,\"timestamp\":1800000000000}")
        #expect(SparkplugHostState(payload: state.payload) == state)
        #expect(SparkplugHostState(payload: Array(" { \"timestamp\": 5, \"online\": false } ".utf8)) == SparkplugHostState(online: false, timestamp: 5))
        #expect(SparkplugHostState(payload: Array("ONLINE".utf8)) == nil, "Sparkplug 2.2's text payload is not a 3.0 STATE")
        #expect(SparkplugHostState(payload: Array("{\"online\":true}".utf8)) == nil)
        #expect(SparkplugHostState.topic(hostID: "scada-1") == "spBv1.0/STATE/scada-1")
        #expect(SparkplugHostState.hostID(ofTopic: "spBv1.0/STATE/scada-1") == "scada-1")
        #expect(SparkplugHostState.hostID(ofTopic: "spBv1.0/STATE/a/b") == nil)
        #expect(SparkplugHostState.problem(hostID: "scada-1") == nil)
        for bad in ["", "a/b", "a+", "#"] { #expect(SparkplugHostState.problem(hostID: bad) != nil, "\(bad)") }
        // A host's STATE, its own or another's, is never data.
        var host = SparkplugHost(gatewayID: "gw")
        let outcome = host.receive(topic: "spBv1.0/STATE/scada-1", payload: state.payload, receivedAtMs: t0)
        #expect(outcome == SparkplugHost.Outcome())
    }
}
