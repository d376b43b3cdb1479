import Foundation
import TributaryCore

/// How one simulated metric moves over time. Every draw comes from the run's seeded
/// generator, so a seed reproduces a run exactly.
public enum SignalModel: Sendable, Equatable {
    /// A sine over `periodMs` of event time (a day for a diurnal temperature) plus noise.
    case sine(mean: Double, amplitude: Double, periodMs: Int64, noise: Double)
    /// Each sample moves up to `step` either way, held inside `range`.
    case randomWalk(start: Double, step: Double, range: ClosedRange<Double>)
    /// A counter that only grows (energy, cycles, packets).
    case counter(start: Int64, increment: ClosedRange<Int64>)
    /// A level that now and then steps to a new value, with rare one-sample spikes.
    case stepSpike(base: Double, stepChance: Double, stepSize: Double, spikeChance: Double, spikeSize: Double, noise: Double)
    /// A switch that sometimes toggles.
    case boolean(toggleChance: Double)
    /// A state machine over named states (`idle`, `running`, `fault`).
    case state([String], changeChance: Double)
}

/// A signal model and where it stands.
struct Signal: Sendable {
    let model: SignalModel
    private var level: Double = 0
    private var count: Int64 = 0
    private var on = false
    private var stateIndex = 0

    init(_ model: SignalModel, generator: inout SeededGenerator) {
        self.model = model
        switch model {
        case .sine: break
        case .randomWalk(let start, _, _): level = start
        case .counter(let start, _): count = start
        case .stepSpike(let base, _, _, _, _, _): level = base
        case .boolean: on = Bool.random(using: &generator)
        case .state(let states, _): stateIndex = states.isEmpty ? 0 : Int.random(in: 0..<states.count, using: &generator)
        }
    }

    /// The next sample, taken at `timeMs` (only the sine looks at the time).
    mutating func sample(timeMs: Int64, generator: inout SeededGenerator) -> ReadingValue {
        switch model {
        case .sine(let mean, let amplitude, let periodMs, let noise):
            let phase = Double(timeMs % max(periodMs, 1)) / Double(max(periodMs, 1))
            return .double(Self.round2(mean + amplitude * sin(2 * .pi * phase) + Self.noise(noise, &generator)))
        case .randomWalk(_, let step, let range):
            level = min(range.upperBound, max(range.lowerBound, level + Double.random(in: -step...step, using: &generator)))
            return .double(Self.round2(level))
        case .counter(_, let increment):
            count += Int64.random(in: increment, using: &generator)
            return .integer(count)
        case .stepSpike(_, let stepChance, let stepSize, let spikeChance, let spikeSize, let noise):
            if Double.random(in: 0..<1, using: &generator) < stepChance {
                level += Bool.random(using: &generator) ? stepSize : -stepSize
            }
            var value = level + Self.noise(noise, &generator)
            if Double.random(in: 0..<1, using: &generator) < spikeChance { value += spikeSize }
            return .double(Self.round2(value))
        case .boolean(let toggleChance):
            if Double.random(in: 0..<1, using: &generator) < toggleChance { on.toggle() }
            return .boolean(on)
        case .state(let states, let changeChance):
            guard !states.isEmpty else { return .text("") }
            if states.count > 1, Double.random(in: 0..<1, using: &generator) < changeChance {
                stateIndex = (stateIndex + Int.random(in: 1..<states.count, using: &generator)) % states.count
            }
            return .text(states[stateIndex])
        }
    }

    private static func noise(_ amount: Double, _ generator: inout SeededGenerator) -> Double {
        amount > 0 ? Double.random(in: -amount...amount, using: &generator) : 0
    }

    /// Sensors report a couple of decimals, not binary noise.
    /// (+ 0.0: never -0.0, which a sink may store as 0.0.)
    private static func round2(_ v: Double) -> Double { (v * 100).rounded() / 100 + 0.0 }
}

/// SplitMix64: a small, seedable generator so a seed reproduces a run.
struct SeededGenerator: RandomNumberGenerator, Sendable {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
