import Testing
@testable import TributaryCore

@Suite struct ClockExchangeTests {
    /// A gateway 2 s ahead, 40 ms each way, the aggregator holding the request 15 ms.
    @Test func offsetAndRoundTrip() {
        let aggregatorSent = Int64(1_000_000)
        let e = ClockExchange(clientSentMs: 1_000_000 - 40 + 2000 - 15, serverReceivedMs: aggregatorSent - 15,
                              serverSentMs: aggregatorSent, clientReceivedMs: aggregatorSent + 40 + 2000)
        #expect(e.isComplete)
        #expect(e.gatewayAheadMs == 2000)
        #expect(e.roundTripMs == 80)
    }

    /// Unequal delays bias the estimate by half the difference, never more than half the round trip.
    @Test func asymmetricDelayStaysWithinHalfTheRoundTrip() {
        // True times: sent at 0, received at 100, answered at once, back at 110; the gateway reads 500 ms more.
        let e = ClockExchange(clientSentMs: 0 + 500, serverReceivedMs: 100, serverSentMs: 100, clientReceivedMs: 110 + 500)
        #expect(e.roundTripMs == 110)
        #expect(e.gatewayAheadMs == 455)
        #expect(abs(e.gatewayAheadMs - 500) <= e.roundTripMs / 2)
    }

    @Test func incompleteExchangesAreNotUsed() {
        #expect(!ClockExchange(clientSentMs: 0, serverReceivedMs: 5, serverSentMs: 6, clientReceivedMs: 7).isComplete)
        #expect(!ClockExchange(clientSentMs: 10, serverReceivedMs: 5, serverSentMs: 4, clientReceivedMs: 11).isComplete)
        #expect(!ClockExchange(clientSentMs: 10, serverReceivedMs: 5, serverSentMs: 6, clientReceivedMs: 9).isComplete)
        // What a hostile client could send to make the arithmetic overflow.
        let hostile = ClockExchange(clientSentMs: .max, serverReceivedMs: 1, serverSentMs: 1, clientReceivedMs: .max)
        #expect(!hostile.isComplete)
    }
}

@Suite struct PrintableTests {
    @Test func controlCharactersBecomeQuestionMarks() {
        #expect(Printable.clean("a\u{1B}[2Jb\u{7F}c\u{9B}d\té") == "a?[2Jb?c?d?é")
        #expect(Printable.clean("abcdef", maxLength: 3) == "abc")
        #expect(Printable.lines("one\ntwo\u{1B}") == "one\ntwo?")
    }

    @Test func saturatingArithmetic() {
        #expect([UInt64.max, 5].saturatingSum { $0 } == .max)
        #expect([UInt64(2), 5].saturatingSum { $0 } == 7)
        #expect(Int64.min.saturatingMinus(1) == .min)
        #expect(Int64.max.saturatingMinus(-1) == .max)
        #expect(Int64(5).saturatingMinus(7) == -2)
    }
}
