import Foundation
import Testing
import TributaryCore
import TributaryMQTT
import TributarySparkplug
@testable import TributarySimulator

@Suite("traffic generator")
struct TrafficGeneratorTests {
    let startMs: Int64 = 1_795_000_000_000

    func options(_ kinds: [DeviceKind], sensors: Int = 12, seed: UInt64 = 7) throws -> SensorSimulator.Options {
        var options = SensorSimulator.Options(broker: try MQTTBroker(url: "mqtt://127.0.0.1:1"), gatewayID: "gw-sim",
                                              sensors: sensors, rate: 100)
        options.kinds = kinds
        options.seed = seed
        return options
    }

    func messages(_ options: SensorSimulator.Options, count: Int) -> [TrafficGenerator.Message] {
        var generator = TrafficGenerator(options: options, startMs: startMs)
        var out: [TrafficGenerator.Message] = []
        for _ in 0..<count {
            guard let message = generator.next() else { break }
            out.append(message)
        }
        return out + generator.deaths()
    }

    @Test func theSameSeedGivesTheSameMessagesAndAnotherSeedOthers() throws {
        var faulty = try options(DeviceKind.allCases)
        faulty.jitter = 0.3
        faulty.faults.malformedShare = 0.05
        faulty.faults.duplicateShare = 0.05
        faulty.faults.outOfOrderShare = 0.05
        faulty.faults.clockSkewMs = 30_000
        faulty.faults.silentShare = 0.2
        let first = messages(faulty, count: 2000)
        #expect(first == messages(faulty, count: 2000))
        faulty.seed = 8
        #expect(first != messages(faulty, count: 2000))
    }

    /// Every message decodes, with the agent's own decoders, into exactly its manifest entries;
    /// every malformed one is refused.
    @Test(arguments: [[DeviceKind.plug], [.environment], [.meter], [.number], [.sparkplug], DeviceKind.allCases])
    func formatsRoundTripThroughTheAgentsDecoders(_ kinds: [DeviceKind]) throws {
        var options = try options(kinds)
        options.faults.malformedShare = 0.05
        options.faults.clockSkewMs = 5_000
        let json = try PayloadDecoder(format: .json, template: TopicTemplate("sensors/{gateway}/{sensor}"), timeField: "ts", defaultGatewayID: "x")
        let number = try PayloadDecoder(format: .number, template: TopicTemplate("sensors/{gateway}/{sensor}/{metric}"), timeField: nil, defaultGatewayID: "x")
        var host = SparkplugHost(gatewayID: "gw-sim")
        var malformed = 0
        var expected = 0
        for message in messages(options, count: 1500) {
            let receivedAt = startMs + 999_999
            var readings: [Reading] = []
            var refused = false
            if message.topic.hasPrefix("spBv1.0/") {
                let outcome = host.receive(topic: message.topic, payload: message.payload, receivedAtMs: receivedAt)
                #expect(outcome.notices.isEmpty && outcome.rebirth == nil, "\(outcome.notices)")
                refused = outcome.quarantineReason != nil
                readings = outcome.readings
            } else {
                let decoder = message.topic.split(separator: "/").count == 4 ? number : json
                do {
                    readings = try decoder.decode(topic: message.topic, payload: message.payload, receivedAtMs: receivedAt)
                } catch {
                    refused = true
                }
            }
            #expect(refused == (message.fault == .malformed), "\(message.topic): \(String(decoding: message.payload, as: UTF8.self))")
            if refused { malformed += 1 }
            expected += message.entries.count
            let decoded = readings.map(Manifest.Entry.init)
            let wanted = message.entries.map { entry in
                var e = entry
                if e.timeMs == nil { e.timeMs = receivedAt }  // the agent stamps untimed readings
                return e
            }
            #expect(decoded.map(\.key).sorted() == wanted.map(\.key).sorted(), "\(message.topic)")
        }
        #expect(malformed > 0 && expected > 1000)
    }

    @Test func ratesJitterAndBurstsShapeTheSchedule() throws {
        var steady = try options([.plug], sensors: 50)
        steady.rate = 500
        steady.jitter = 0.5
        var generator = TrafficGenerator(options: steady, startMs: startMs)
        var inFirstTenSeconds = 0
        while let message = generator.next(), message.dueMs < 10_000 { inFirstTenSeconds += 1 }
        // 500 msg/s for 10 s, give or take the jitter's wobble at the edge.
        #expect((4_800...5_200).contains(inFirstTenSeconds))

        var bursty = steady
        bursty.burst = .init(factor: 4, lengthMs: 1_000, everyMs: 5_000)
        generator = TrafficGenerator(options: bursty, startMs: startMs)
        var perSecond = [Int](repeating: 0, count: 10)
        while let message = generator.next(), message.dueMs < 10_000 { perSecond[Int(message.dueMs / 1000)] += 1 }
        // Seconds 0 and 5 are bursts: about four times the others.
        #expect(perSecond[5] > 3 * perSecond[3] && perSecond[0] > 3 * perSecond[7], "\(perSecond)")

        var perSensor = steady
        perSensor.sensorRate = 2
        generator = TrafficGenerator(options: perSensor, startMs: startMs)
        var count = 0
        while let message = generator.next(), message.dueMs < 10_000 { count += 1 }
        #expect((900...1_100).contains(count), "50 sensors at 2/s for 10 s")
    }

    @Test func eachSensorsTimesIncreaseEvenWithSkewAndBursts() throws {
        var options = try options(DeviceKind.json, sensors: 3)
        options.rate = 1_000_000
        options.faults.clockSkewMs = 60_000
        var generator = TrafficGenerator(options: options, startMs: startMs)
        var last: [String: Int64] = [:]
        for _ in 0..<3000 {
            let message = generator.next()!
            guard let entry = message.entries.first, let time = entry.timeMs else { continue }
            #expect(time > last[entry.sensorID, default: .min])
            last[entry.sensorID] = time
        }
    }

    @Test func faultsAreDrawnAndSilentSensorsStop() throws {
        var options = try options([.plug, .number], sensors: 40)
        options.faults.duplicateShare = 0.1
        options.faults.outOfOrderShare = 0.1
        options.faults.silentShare = 0.25
        var generator = TrafficGenerator(options: options, startMs: startMs)
        let silent = Set(generator.silentSensors)
        #expect(!silent.isEmpty && silent.count < 40)
        var sentBySensor: [String: Int] = [:]
        var faults: [TrafficGenerator.Fault: Int] = [:]
        var lastDue = 0.0
        var dueWentBack = false
        for _ in 0..<4000 {
            let message = generator.next()!
            let sensor = String(message.topic.split(separator: "/")[2])
            sentBySensor[sensor, default: 0] += 1
            if let fault = message.fault { faults[fault, default: 0] += 1 }
            if message.fault == .duplicate { #expect(!message.topic.hasSuffix("/level") && !message.topic.hasSuffix("/flow"), "plain numbers are never duplicated") }
            if message.dueMs < lastDue { dueWentBack = true }
            lastDue = max(lastDue, message.dueMs)
        }
        #expect(faults[.duplicate, default: 0] > 100 && faults[.outOfOrder, default: 0] > 200)
        #expect(dueWentBack, "held messages go out after later ones")
        for sensor in silent { #expect(sentBySensor[sensor, default: 0] <= 3) }
        #expect(sentBySensor.filter { !silent.contains($0.key) }.allSatisfy { $0.value > 50 })
    }

    @Test func isoTimestampsRoundTrip() throws {
        for ms: Int64 in [0, 951_782_400_123, startMs, 4_102_444_799_999, -1] {
            let text = Timestamp.iso8601(ms: ms)
            if ms >= 0 { #expect(try Timestamp.epochMs(fromISO8601: text) == ms, "\(text)") }
        }
        #expect(Timestamp.iso8601(ms: 951_782_400_123) == "2000-02-29T00:00:00.123Z")
    }
}

@Suite("manifest file")
struct ManifestFileTests {
    @Test func writesAndReadsEveryKindOfLine() throws {
        var manifest = Manifest(messagesPublished: 7, entries: [
            .init(gatewayID: "gw", sensorID: "s1", metric: "t", timeMs: 5, value: .double(1.5)),
            .init(gatewayID: "gw", sensorID: "s2", metric: "level", timeMs: nil, value: .integer(3)),
            .init(gatewayID: "gw", sensorID: "s1", metric: "on", timeMs: 6, value: .boolean(true)),
            .init(gatewayID: "gw", sensorID: "s1", metric: "mode", timeMs: 7, value: .text("a \"quoted\" mode")),
        ])
        manifest.quarantined = ["sensors/gw/s1": 2]
        manifest.duplicatesPublished = 1
        manifest.outOfOrder = 3
        manifest.silentSensors = [.init(gatewayID: "gw", sensorID: "s9")]
        let path = "/tmp/tributary-manifest-test-\(UInt32.random(in: 0...UInt32.max)).jsonl"
        defer { unlink(path) }
        try manifest.write(to: path)
        #expect(try Manifest.read(from: path) == manifest)
    }
}
