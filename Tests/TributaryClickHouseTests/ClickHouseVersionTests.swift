import Testing
import TributaryClickHouse

/// `SELECT version()` as releases answer it, and the order the sink's decisions rely on.
@Suite("ClickHouse versions")
struct ClickHouseVersionTests {
    @Test(arguments: [
        ("18.16.1", [18, 16, 1]), ("26.9.2.1", [26, 9, 2, 1]), ("24.3.2.23-lts", [24, 3, 2, 23]),
        (" 21.11.1.1\n", [21, 11, 1, 1]), ("23.8.16.42.altinitystable", [23, 8, 16, 42]), ("25.3", [25, 3]),
    ])
    func parsesWhatReleasesAnswer(text: String, numbers: [Int]) {
        #expect(ClickHouseVersion(text)?.numbers == numbers)
    }

    @Test(arguments: ["", "26", "version 26.9", "x.y", ".26.9"])
    func refusesWhatIsNoRelease(text: String) {
        #expect(ClickHouseVersion(text) == nil)
    }

    @Test func comparesNumberByNumber() throws {
        let v = { (text: String) in try #require(ClickHouseVersion(text)) }
        #expect(try v("18.16.1") < ClickHouseVersion(21, 11))
        #expect(try v("21.10.9.9") < ClickHouseVersion(21, 11))
        #expect(try v("21.11.1.1") >= ClickHouseVersion(21, 11))
        #expect(try v("21.9.1") < ClickHouseVersion(21, 11), "9 < 11 as numbers, not as text")
        #expect(try v("26.9.2.1") > ClickHouseVersion(24, 1))
        #expect(try v("23.12.1") < ClickHouseVersion(24, 1))
        #expect(ClickHouseVersion(24, 1) == ClickHouseVersion(24, 1) && ClickHouseVersion(24, 1) < ClickHouseVersion(24, 1, 0))
        #expect(try v("26.9.2.1").description == "26.9.2.1")
    }
}
