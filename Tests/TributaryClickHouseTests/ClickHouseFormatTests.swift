import Testing
@testable import TributaryClickHouse

/// ClickHouse's HTTP interface as the client speaks it: TabSeparated, RowBinary, endpoint URLs,
/// error answers, quoting. No server; `IntegrationTests/ClickHouseTests` reads it all back from one.
@Suite("ClickHouse client formats")
struct ClickHouseFormatTests {
    @Test func tabSeparatedRoundTripsAwkwardText() {
        let texts: [String?] = ["plain", "tab\there", "line\nbreak", "back\\slash", "\\N", "", nil, "carriage\rreturn", "nul\0byte", "中文"]
        var writer = TabSeparated.Writer()
        for text in texts {
            writer.field(text)
            writer.field(Int64(-5))
            writer.endRow()
        }
        let rows = TabSeparated.parse(writer.bytes)
        #expect(rows.map { $0[0] } == texts)
        #expect(rows.allSatisfy { $0.count == 2 && $0[1] == "-5" })
    }

    @Test func doublesAreWrittenSoTheyReadBack() {
        for value in [1.5, 1e-05, 123456789.125, -0.1, 1e300] {
            var writer = TabSeparated.Writer()
            writer.field(value)
            #expect(Double(String(decoding: writer.bytes, as: UTF8.self)) == value)
        }
    }

    /// RowBinary as ClickHouse documents it: LEB128 lengths, little-endian numbers, a NULL flag
    /// before Nullable values. (That ClickHouse reads it back bit for bit, including -7.94,
    /// which 18.16 reads one ulp off as text, is checked against a real server in the
    /// integration tests.)
    @Test func rowBinaryEncodesEachType() {
        var w = RowBinary.Writer()
        w.string("ab")
        w.string(String(repeating: "x", count: 300))
        w.string(nil as String?)
        w.string("" as String?)
        w.int64(-2)
        w.int64(nil as Int64?)
        w.uint64(0x0102_0304_0506_0708)
        w.uint32(258)
        w.float64(-7.94)
        w.float64(nil)
        var expected: [UInt8] = [2, 0x61, 0x62]
        expected += [0xAC, 0x02] + [UInt8](repeating: 0x78, count: 300)  // 300 = 0b10_0101100
        expected += [1]
        expected += [0, 0]
        expected += [0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        expected += [1]
        expected += [8, 7, 6, 5, 4, 3, 2, 1]
        expected += [2, 1, 0, 0]
        expected += [0] + (0..<8).map { UInt8(truncatingIfNeeded: (-7.94).bitPattern >> UInt64($0 * 8)) }
        expected += [1]
        #expect(w.bytes == expected)
    }

    @Test func endpointsParseWithDefaults() throws {
        let plain = try ClickHouseEndpoint(url: "clickhouse://ch.example")
        #expect(plain == ClickHouseEndpoint(host: "ch.example", port: 8123, database: "tributary"))
        let full = try ClickHouseEndpoint(url: "clickhouse+https://ingest:p%40ss@10.0.0.5:9443/metrics")
        #expect(full.secure && full.port == 9443 && full.database == "metrics" && full.user == "ingest" && full.password == "p@ss")
        #expect(full.baseURL == "https://10.0.0.5:9443/")
        #expect(full.description == "clickhouse+https://ingest@10.0.0.5:9443/metrics", "the password never shows")
        let v6 = try ClickHouseEndpoint(url: "clickhouse://[::1]:8123/tributary")
        #expect(v6.baseURL == "http://[::1]:8123/")
    }

    @Test(arguments: ["http://ch:8123/db", "clickhouse:///db", "clickhouse://ch/bad-name", "clickhouse://ch/db?user=x"])
    func badEndpointsAreRefused(url: String) {
        #expect(throws: ClickHouseURLError.self) { try ClickHouseEndpoint(url: url) }
    }

    @Test func aBadURLsErrorHidesThePassword() {
        do {
            _ = try ClickHouseEndpoint(url: "clickhouse://u:topsecret@ch/bad-name")
            Issue.record("accepted")
        } catch {
            #expect(!error.description.contains("topsecret") && error.description.contains("bad-name"), "\(error)")
        }
    }

    @Test func errorAnswersOfOldAndNewReleasesAreUnderstood() {
        let old = ClickHouseError.parse("Code: 193, e.displayText() = DB::Exception: Wrong password for user x, e.what() = DB::Exception\n")
        #expect(old.code == 193 && old.text == "code 193: DB::Exception: Wrong password for user x")
        let new = ClickHouseError.parse("Code: 516. DB::Exception: x: Authentication failed: password is incorrect. (AUTHENTICATION_FAILED) (version 23.8.1)")
        #expect(new.code == 516 && new.text.hasPrefix("code 516: DB::Exception: x: Authentication failed"))
        #expect(ClickHouseError.parse("plain text").code == nil)
    }

    @Test func stringLiteralsAreQuoted() {
        #expect(ClickHouseClient.quote("it's a \\ test") == "'it\\'s a \\\\ test'")
    }

    @Test(arguments: ["clickhouse://u:pa/ss@host/db", "clickhouse://u:12#34@host/db", "clickhouse://my%20host/db"])
    func mangledPasswordsAndHostsAreRefusedWithoutShowingThePassword(url: String) {
        do {
            _ = try ClickHouseEndpoint(url: url)
            Issue.record("accepted \(url)")
        } catch {
            #expect(!error.description.contains("ss@") && !error.description.contains("34@"), "\(error)")
        }
    }
}
