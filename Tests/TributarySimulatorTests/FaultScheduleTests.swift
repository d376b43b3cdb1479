import Testing
import TributarySimulator

@Suite("fault proxy schedule")
struct FaultScheduleTests {
    @Test func parsesAScriptInTimeOrder() throws {
        let schedule = try FaultSchedule.parse("""
            # lost acknowledgements, then a partition
            0      latency 50ms
            1.5s   drop-responses 0.25   # a quarter of the replies
            500ms  bandwidth 64k

            3s partition
            4s heal
            5s disconnect
            6s refuse
            6s accept
            7s normal
            8s end
            """)
        #expect(schedule.steps.map(\.atMs) == [0, 500, 1500, 3000, 4000, 5000, 6000, 6000, 7000, 8000])
        #expect(schedule.steps[1].action == .bandwidth(bytesPerSecond: 65536))
        #expect(schedule.steps[2].action == .dropResponses(share: 0.25))
        #expect(schedule.steps[6].action == .refuse && schedule.steps[7].action == .accept, "equal times keep the file's order")
    }

    @Test(arguments: [
        ("5s explode", "script:1: unknown action 'explode'"),
        ("soon partition", "script:1: expected '<time> <action> [argument]'"),
        ("1s latency", "script:1: latency needs an argument such as 50ms"),
        ("\n\n2s drop-responses 1.5", "script:3: drop-responses takes a share between 0 and 1"),
        ("1s bandwidth fast", "script:1: bandwidth needs an argument such as 64k"),
    ])
    func refusesABadLineAndSaysWhere(_ script: String, _ expected: String) {
        #expect {
            try FaultSchedule.parse(script)
        } throws: { error in
            "\(error)".hasPrefix(expected)
        }
    }

    @Test func faultsFollowTheActions() {
        var faults = ProxyFaults()
        for action in [FaultSchedule.Action.latency(ms: 20), .partition, .dropResponses(share: 1), .refuse] {
            faults = faults.applying(action)
        }
        #expect(faults.latencyMs == 20 && faults.partitioned && faults.dropResponses == 1 && faults.refusing)
        #expect(faults.applying(.heal).partitioned == false)
        #expect(faults.applying(.disconnect) == faults, "disconnect is an event, not a state")
        #expect(faults.applying(.normal) == ProxyFaults())
    }
}
