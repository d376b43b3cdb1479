import Foundation
import Testing
import TributaryCore
import TributarySimulator
import TributaryTesting

/// Clients that cost the aggregator without sending anything useful: slow uploads, slow
/// heads, idle connections by the thousand. Each attacker comes from its own loopback address
/// (127.0.0.2, 127.0.0.3), the real agent from 127.0.0.1.
@Suite("slow and idle clients", .serialized)
struct SlowClientTests {
    /// Issue 23, item 8, and issue 25, item 8: 70 connections sending the head of a 100,000-byte
    /// POST and then one body byte every 2 s took every place in admission control (three
    /// virtual gateways got 98 answers of 429 and delivered nothing in 10 s), and 3,000 idle
    /// sockets held 3,024 descriptors with no cap. Now bodies have a deadline, each address a
    /// share of admission and of connections, and idle connections a timeout.
    @Test("70 slow uploads and 1,000 idle connections from other addresses: a real agent still delivers exactly; the aggregator's descriptors stay bounded")
    func slowAndIdleClientsStarveNobody() async throws {
        let harness = try await ProcessHarness(gatewayID: "gw-patient", aggregatorSettings: FaultTests.fast)
        defer { harness.dir.remove() }
        let aggregator = try await harness.startAggregator()
        // In a process of its own: libmosquitto's select() fails in a process past 1024 descriptors,
        // and the test's own MQTT publisher must not be that process.
        try Self.attacker.write(toFile: harness.dir.file("attacker.py"), atomically: true, encoding: .utf8)
        let attacker = try ChildProcess(executable: "/usr/bin/python3",
                                        arguments: [harness.dir.file("attacker.py"), String(harness.httpPort)], logFile: harness.dir.file("attacker.log"))
        defer { kill(attacker.pid, SIGKILL) }
        try await eventually(timeout: .seconds(30), "the attacker has its connections open") {
            ((try? String(contentsOfFile: harness.dir.file("attacker.log"), encoding: .utf8)) ?? "").contains("connected")
        }
        try await Task.sleep(for: .seconds(1))
        let agent = try await harness.startAgent()
        let manifest = try await harness.publish(3000, rate: 600).value
        let report = try await harness.verifyWhenComplete(manifest, timeout: .seconds(90))
        #expect(report.passed, "\(report)")

        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(aggregator.pid)/fd").count
        let admission = try await harness.fleet().admission
        // Per address at most max_connections_per_address (256) stay open: the idle ones' address
        // is at it, the slow ones below it, plus the agent's and the files the aggregator holds.
        #expect(descriptors < 256 + 70 + 100, "the aggregator holds \(descriptors) descriptors")
        #expect(admission.connectionsRefused >= 1000 - 256, "\(admission)")
        #expect(admission.bodyTimeouts + admission.addressBusyRefusals > 0, "\(admission)")
        #expect(admission.headTimeouts >= 15, "the slow heads were cut off, empty lines first or not: \(admission)")
        let log = try String(contentsOfFile: harness.dir.file("aggregator.log"), encoding: .utf8)
        #expect(log.contains("connection refused") && log.contains("peer=127.0.0.3"), "the refusals are logged with the address")
        await harness.stop(agent, aggregator)
    }

    /// 70 connections that send the head of a 100,000-byte POST and then a body byte every
    /// 2 s, from 127.0.0.2; 4 that declare 16 MiB bodies and send a byte every 2 s, from 127.0.0.5 (a
    /// total deadline let them hold all of admission control for 17 minutes); 5 that send empty
    /// lines and then a head a byte every 2 s, from 127.0.0.6; 10 slow heads from 127.0.0.4;
    /// 1,000 that connect from 127.0.0.3 and say nothing. Runs until killed.
    static let attacker = """
        import socket, sys, time
        port = int(sys.argv[1])
        def open_from(source):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((source, 0))
            s.connect(("127.0.0.1", port))
            return s
        head = b"POST /v1/batches HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/x-protobuf\\r\\nContent-Length: 100000\\r\\n\\r\\n"
        slow = []
        for _ in range(70):
            s = open_from("127.0.0.2")
            s.sendall(head)
            slow.append(s)
        # Four bodies declared 16 MiB each, from one address: all of max_in_flight_bytes once.
        big = []
        for _ in range(4):
            s = open_from("127.0.0.5")
            s.sendall(b"POST /v1/batches HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/x-protobuf\\r\\nContent-Length: 16777216\\r\\n\\r\\nx")
            big.append(s)
        # Empty lines first, which parsers skip, then a head a byte every 2 s.
        for _ in range(5):
            s = open_from("127.0.0.6")
            s.sendall(b"\\r\\n\\r\\nPOST /v1/batches HTTP/1.1\\r\\nHo")
            big.append(s)
        heads = []
        for _ in range(10):
            s = open_from("127.0.0.4")
            s.sendall(b"POST /v1/batches HTTP/1.1\\r\\nHo")
            heads.append(s)
        idle = []
        for _ in range(1000):
            try:
                idle.append(open_from("127.0.0.3"))
            except OSError as error:
                print("idle connection failed:", error, flush=True)
        print("connected", len(slow), len(idle), flush=True)
        while True:
            for s in slow + heads + big:
                try:
                    s.send(b"x", socket.MSG_DONTWAIT)
                except OSError:
                    pass
            time.sleep(2)
        """
}
