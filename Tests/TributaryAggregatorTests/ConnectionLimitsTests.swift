import Logging
import Testing
@testable import TributaryAggregator

/// One address's share of admission control is enforced only while the aggregator is busy.
@Suite("connection limits")
struct ConnectionLimitsTests {
    static func limits() -> ConnectionLimits {
        var settings = ConnectionLimits.Settings()
        settings.maxInFlightPerAddress = 4
        settings.maxInFlightBytesPerAddress = 1000
        settings.admissionBatches = 20
        settings.admissionBytes = 100_000
        return ConnectionLimits(settings: settings, logger: Logger(label: "test"))
    }

    /// Gateways behind one NAT'd address: while there is room, no share holds them back.
    @Test func oneAddressMayUseTheRoomThatIsFree() {
        let limits = Self.limits()
        for _ in 0..<10 { #expect(limits.admit(from: "10.0.0.1", bytes: 10)) }
        #expect(limits.counts.addressBusyRefusals == 0)
    }

    /// Half of admission taken: an address past its share waits; another still gets in.
    @Test func whenBusyAnAddressPastItsShareIsRefusedAndOthersAreNot() {
        let limits = Self.limits()
        for _ in 0..<10 { #expect(limits.admit(from: "10.0.0.1", bytes: 10)) }
        #expect(!limits.admit(from: "10.0.0.1", bytes: 10), "10 of 20 places taken, and 10.0.0.1 holds more than 4")
        #expect(limits.admit(from: "10.0.0.2", bytes: 10))
        #expect(limits.counts.addressBusyRefusals == 1)
        // Bytes count too: a second large request from 10.0.0.2 is past its 1,000 bytes.
        #expect(!limits.admit(from: "10.0.0.2", bytes: 2000))
        // Room again once requests finish.
        for _ in 0..<10 { limits.finish(from: "10.0.0.1", bytes: 10) }
        #expect(limits.admit(from: "10.0.0.1", bytes: 10))
    }
}
