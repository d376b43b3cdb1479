import Testing
import TributaryWire

/// Each HTTP answer has one word, the same on both ends of the wire.
@Suite("request outcomes")
struct RequestOutcomeTests {
    static func ack(_ outcome: Tributary_V1_Ack.Outcome) -> Tributary_V1_Ack {
        var ack = Tributary_V1_Ack()
        ack.outcome = outcome
        return ack
    }

    @Test func eachAnswerHasOneWord() {
        let cases: [(Int, Tributary_V1_Ack?, RequestOutcome)] = [
            (200, Self.ack(.accepted), .accepted), (200, Self.ack(.duplicate), .duplicate), (200, Self.ack(.heartbeat), .heartbeat),
            (200, nil, .unavailable), (200, Self.ack(.retry), .unavailable),
            (429, Self.ack(.retry), .busy), (503, Self.ack(.retry), .unavailable), (500, nil, .unavailable), (502, nil, .unavailable),
            (401, Self.ack(.rejected), .unauthorized), (403, Self.ack(.rejected), .unauthorized),
            (409, Self.ack(.rejected), .conflict), (408, Self.ack(.rejected), .timedOut), (404, nil, .misdirected),
            (400, Self.ack(.rejected), .rejected), (413, Self.ack(.rejected), .rejected), (415, nil, .rejected), (422, Self.ack(.rejected), .rejected),
        ]
        for (status, ack, expected) in cases {
            #expect(RequestOutcome(httpStatus: status, ack: ack) == expected, "\(status)")
        }
    }

    @Test func wordsAreDistinctAndAggregatorsNeverSayWhatOnlySendersSee() {
        #expect(Set(RequestOutcome.allCases.map(\.rawValue)).count == RequestOutcome.allCases.count)
        #expect(!RequestOutcome.aggregatorAnswers.contains(.unreachable) && !RequestOutcome.aggregatorAnswers.contains(.misdirected))
        #expect(RequestOutcome.timedOut.rawValue == "timed_out")
    }
}
