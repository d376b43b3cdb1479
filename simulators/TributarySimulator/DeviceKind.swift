import TributaryCore
import TributarySparkplug

/// The kinds of device the sensor simulator imitates: what they measure and how their
/// messages look on the wire. Each maps to a subscription in `SensorSimulator.subscriptionYAML`.
public enum DeviceKind: String, Sendable, CaseIterable {
    /// A smart plug with an environment sensor (Tasmota-like): nested JSON, `ts` in epoch ms.
    /// `{"ts":1700000000123,"temperature":21.53,"humidity":40.2,"ENERGY":{"Power":12.5,"Total":1234},"relay":true}`
    case plug
    /// A battery room sensor: JSON with `ts` as an ISO 8601 string and a text state.
    /// `{"ts":"2026-11-24T01:02:03.456Z","SI7021":{"Temperature":21.4,"Humidity":48.1},"Battery":87.5,"Door":"closed"}`
    case environment
    /// A three-phase meter: JSON with `ts` in epoch microseconds and an array of voltages.
    /// `{"ts":1700000000123456,"energy":{"import_kwh":5123,"power_w":812.4},"voltage":[230.1,229.8,231],"state":"running"}`
    case meter
    /// One plain number per message on `<prefix>/<gateway>/<sensor>/<metric>`, no time of its
    /// own: the agent stamps the receive time.
    case number
    /// A Sparkplug B device under the edge node `<gateway>` in group `<prefix>`: DDATA by alias.
    case sparkplug

    /// The JSON shapes: what `--format json` spreads the sensors over.
    public static let json: [DeviceKind] = [.plug, .environment, .meter]

    struct Metric {
        let name: String
        let model: SignalModel
        /// How a Sparkplug device sends it.
        var sparkplugType: SparkplugDataType = .double
    }

    var metrics: [Metric] {
        switch self {
        case .plug: [
            Metric(name: "temperature", model: .sine(mean: 21, amplitude: 3, periodMs: 86_400_000, noise: 0.2)),
            Metric(name: "humidity", model: .randomWalk(start: 45, step: 0.5, range: 5...95)),
            Metric(name: "ENERGY.Power", model: .stepSpike(base: 40, stepChance: 0.02, stepSize: 15, spikeChance: 0.005, spikeSize: 900, noise: 2)),
            Metric(name: "ENERGY.Total", model: .counter(start: 1000, increment: 0...2)),
            Metric(name: "relay", model: .boolean(toggleChance: 0.02)),
        ]
        case .environment: [
            Metric(name: "SI7021.Temperature", model: .sine(mean: 24, amplitude: 2, periodMs: 86_400_000, noise: 0.1)),
            Metric(name: "SI7021.Humidity", model: .randomWalk(start: 50, step: 0.3, range: 10...90)),
            Metric(name: "Battery", model: .randomWalk(start: 90, step: 0.05, range: 0...100)),
            Metric(name: "Door", model: .state(["closed", "open"], changeChance: 0.03)),
        ]
        case .meter: [
            Metric(name: "energy.import_kwh", model: .counter(start: 5000, increment: 0...3)),
            Metric(name: "energy.power_w", model: .stepSpike(base: 800, stepChance: 0.05, stepSize: 120, spikeChance: 0.01, spikeSize: 2500, noise: 10)),
            Metric(name: "voltage.0", model: .sine(mean: 230, amplitude: 2, periodMs: 60_000, noise: 0.4)),
            Metric(name: "voltage.1", model: .sine(mean: 230, amplitude: 2, periodMs: 61_000, noise: 0.4)),
            Metric(name: "voltage.2", model: .sine(mean: 230, amplitude: 2, periodMs: 59_000, noise: 0.4)),
            Metric(name: "state", model: .state(["idle", "running", "fault"], changeChance: 0.02)),
        ]
        case .number: [
            Metric(name: "level", model: .randomWalk(start: 2.5, step: 0.05, range: 0...5)),
            Metric(name: "flow", model: .stepSpike(base: 12, stepChance: 0.03, stepSize: 3, spikeChance: 0.01, spikeSize: 40, noise: 0.5)),
        ]
        case .sparkplug: [
            Metric(name: "Temperature", model: .sine(mean: 65, amplitude: 10, periodMs: 3_600_000, noise: 0.5)),
            Metric(name: "Pressure", model: .randomWalk(start: 101.3, step: 0.2, range: 90...120)),
            Metric(name: "Cycles", model: .counter(start: 0, increment: 1...1), sparkplugType: .int64),
            Metric(name: "Running", model: .boolean(toggleChance: 0.01), sparkplugType: .boolean),
            Metric(name: "Mode", model: .state(["auto", "manual", "maintenance"], changeChance: 0.01), sparkplugType: .string),
        ]
        }
    }

    /// The JSON text of one message of a JSON kind; `values` follow `metrics`.
    func json(_ values: [ReadingValue], timeMs: Int64, microseconds: Int64) -> String {
        let v = values.map(\.jsonLiteral)
        switch self {
        case .plug:
            return "{\"ts\":\(timeMs),\"temperature\":\(v[0]),\"humidity\":\(v[1]),\"ENERGY\":{\"Power\":\(v[2]),\"Total\":\(v[3])},\"relay\":\(v[4])}"
        case .environment:
            return "{\"ts\":\"\(Timestamp.iso8601(ms: timeMs))\",\"SI7021\":{\"Temperature\":\(v[0]),\"Humidity\":\(v[1])},\"Battery\":\(v[2]),\"Door\":\(v[3])}"
        case .meter:
            return "{\"ts\":\(timeMs * 1000 + microseconds),\"energy\":{\"import_kwh\":\(v[0]),\"power_w\":\(v[1])},\"voltage\":[\(v[2]),\(v[3]),\(v[4])],\"state\":\(v[5])}"
        case .number, .sparkplug:
            preconditionFailure("\(self) is not a JSON kind")
        }
    }
}

extension ReadingValue {
    /// The value as a JSON literal: numbers in Swift's shortest exact form, so they read back
    /// as the same Double.
    var jsonLiteral: String {
        switch self {
        case .double(let d): "\(d)"
        case .integer(let i): "\(i)"
        case .boolean(let b): b ? "true" : "false"
        case .text(let t): JSONValue.quoted(t)
        }
    }
}

